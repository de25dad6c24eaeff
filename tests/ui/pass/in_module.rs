//! The attribute works on functions nested in modules, keeps their visibility, attributes and docs,
//! handles raw identifiers, and follows a `#[cfg]` that removes the function.
#![deny(warnings, missing_docs)]
#![forbid(unsafe_code)]

mod jobs {
    pub mod nightly {
        use scheduler::background_service;

        /// Documented, public, and still callable from outside the module.
        #[background_service(interval = "30 2 * * *", tz = "America/New_York")]
        #[inline]
        #[must_use]
        pub fn cleanup() -> Result<(), String> {
            Ok(())
        }

        /// A raw identifier; its default name is `...::nightly::type`.
        #[background_service(interval = 60)]
        pub(crate) async fn r#type() {}

        /// Removed by `#[cfg]`: its registration must go too.
        #[background_service(interval = 5)]
        #[cfg(any())]
        pub fn never_compiled() {}
    }
}

#[scheduler::background_service(interval = 10)]
async fn fully_qualified() {}

fn main() {
    assert_eq!(jobs::nightly::cleanup(), Ok(()));
    drop(jobs::nightly::r#type());
    drop(fully_qualified());

    // A function local to a block can be a service too.
    #[scheduler::background_service(interval = 1)]
    fn local() {}
    local();
}
