//! Compile-time behaviour of `#[background_service]`: valid forms compile and run, and every mistake
//! the attribute can see is one clear error on the offending token.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
