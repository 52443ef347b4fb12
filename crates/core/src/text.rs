//! Numbers as text without `core::fmt`. The browser widget renders through these: `format!` and
//! `to_string` pull the formatting machinery (`Formatter`, padding, `Display` for each integer
//! type) into its wasm.

/// Appends `n` in decimal, zero-padded to at least `width` digits.
pub fn push_decimal(out: &mut String, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = n;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        start -= 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for _ in digits.len() - start..width {
        out.push('0');
    }
    for &d in digits.iter().skip(start) {
        out.push(char::from(d));
    }
}

/// `n` in decimal, as `n.to_string()` writes it.
pub fn decimal(n: i64) -> String {
    let mut out = String::new();
    if n < 0 {
        out.push('-');
    }
    push_decimal(&mut out, n.unsigned_abs(), 1);
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn writes_numbers_as_fmt_does() {
        for n in [0, 7, 10, 99, 1_000, -1, -42, i64::MAX, i64::MIN] {
            assert_eq!(decimal(n), n.to_string());
        }
        let mut out = String::new();
        push_decimal(&mut out, 7, 3);
        push_decimal(&mut out, 2026, 2);
        push_decimal(&mut out, u64::MAX, 4);
        assert_eq!(out, format!("0072026{}", u64::MAX));
    }
}
