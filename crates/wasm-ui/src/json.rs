//! Status JSON, parsed by the browser (`JSON.parse`) and read into the core's type through
//! [`JsonValue`]: no JSON parser or serde in the widget's wasm.

use mirrorfarm_core::status::{JsonValue, ReadError, RepositoryStatus};
use wasm_bindgen::{JsCast, JsValue};

/// A value `JSON.parse` made.
struct Parsed(JsValue);

impl JsonValue for Parsed {
    fn member(&self, name: &str) -> Option<Self> {
        if !self.0.is_object() {
            return None;
        }
        let v = js_sys::Reflect::get(&self.0, &JsValue::from_str(name)).ok()?;
        (!v.is_null() && !v.is_undefined()).then_some(Self(v))
    }

    fn string(&self) -> Option<String> {
        self.0.as_string()
    }

    fn number(&self) -> Option<f64> {
        self.0.as_f64()
    }

    fn boolean(&self) -> Option<bool> {
        self.0.as_bool()
    }

    fn elements(&self) -> Option<Vec<Self>> {
        let array = self.0.dyn_ref::<js_sys::Array>()?;
        Some(array.iter().map(Self).collect())
    }
}

/// Reads a `GET …/status` body.
pub fn parse_status(body: &str) -> Result<RepositoryStatus, String> {
    let value = js_sys::JSON::parse(body).map_err(|_| "the answer was not JSON".to_owned())?;
    RepositoryStatus::read(&Parsed(value)).map_err(ReadError::message)
}
