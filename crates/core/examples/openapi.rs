//! Prints the OpenAPI document of everything the Worker serves (scripts/build writes it into
//! the Worker's static assets): `cargo run -p mirrorfarm-core --features openapi --example openapi`.

fn main() {
    println!("{:#}", mirrorfarm_core::api::openapi::document());
}
