//! The application's shared resources: [`State<T>`], and the typed map the manager keeps them in.
//!
//! ```text
//!  builder.state(pool)   build() / add_service()          each fire
//!  ───────┼──────────────────────┼───────────────────────────┼──────────▶
//!   stored once under     every State<T> parameter of     the job gets a clone of the
//!   its TypeId            the service looked up once       Arc found at bind time: no
//!                         (all missing types reported)     map lookup, no allocation
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A shared resource of the application, handed to a job that asks for it by its type.
///
/// Register the value once, with [`ServiceManagerBuilder::state`](crate::ServiceManagerBuilder::state),
/// and take `State<T>` as a parameter of a `#[background_service]` function or of a
/// [`Service::from_fn`](crate::Service::from_fn) handler, next to (or instead of) its
/// [`JobContext`](crate::JobContext). `State<T>` dereferences to `T`; cloning it clones an
/// [`Arc`], never the value.
///
/// ```
/// use scheduler::{JobContext, Schedule, Service, ServiceManager, State};
/// use std::time::Duration;
///
/// struct Settings {
///     greeting: String,
/// }
///
/// async fn greet(ctx: JobContext, settings: State<Settings>) {
///     tracing::info!(service = ctx.name(), "{}", settings.greeting);
/// }
///
/// let manager = ServiceManager::builder()
///     .state(Settings { greeting: "hello".into() })
///     .build()?;
/// manager.try_add_service(
///     "greet",
///     Service::from_fn(Schedule::every(Duration::from_secs(60))?, greet),
/// )?; // an error here if no `Settings` had been given
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct State<T: ?Sized>(Arc<T>);

impl<T: ?Sized> State<T> {
    /// Wraps a shared value, e.g. to call a job function directly in a test.
    pub fn from_arc(value: Arc<T>) -> Self {
        State(value)
    }

    /// The shared value itself, to keep or to hand on.
    pub fn into_arc(self) -> Arc<T> {
        self.0
    }
}

impl<T> State<T> {
    /// Wraps a value, e.g. to call a job function directly in a test.
    pub fn new(value: T) -> Self {
        State(Arc::new(value))
    }
}

impl<T: ?Sized> Clone for State<T> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

impl<T: ?Sized> Deref for State<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized> AsRef<T> for State<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&&*self.0).finish()
    }
}

/// The resources a manager was built with, one per type. Not public API: reached only through
/// [`State`] parameters and [`ServiceManager::state`](crate::ServiceManager::state).
#[doc(hidden)]
#[derive(Default, Clone)]
pub struct Resources {
    by_type: HashMap<TypeId, Entry>,
}

#[derive(Clone)]
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl Resources {
    /// Stores `value` as the resource of type `T`; returns the name of the type when it replaced an
    /// earlier one.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<&'static str> {
        let entry = Entry {
            value: Arc::new(value),
            type_name: std::any::type_name::<T>(),
        };
        self.by_type
            .insert(TypeId::of::<T>(), entry)
            .map(|old| old.type_name)
    }

    /// The resource of type `T`, if there is one.
    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<State<T>> {
        let entry = self.by_type.get(&TypeId::of::<T>())?;
        Arc::clone(&entry.value).downcast::<T>().ok().map(State)
    }

    /// The names of the types held, sorted (for `Debug` and error messages).
    pub(crate) fn type_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.by_type.values().map(|e| e.type_name).collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.type_names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type_and_the_later_one_wins() {
        let mut resources = Resources::default();
        assert_eq!(resources.insert(1_u32), None);
        assert_eq!(resources.insert(String::from("a")), None);
        assert_eq!(resources.insert(2_u32), Some("u32"));
        assert_eq!(*resources.get::<u32>().unwrap(), 2);
        assert_eq!(&*resources.get::<String>().unwrap(), "a");
        assert!(resources.get::<u64>().is_none());
        assert_eq!(
            format!("{resources:?}"),
            r#"{"alloc::string::String", "u32"}"#
        );
    }

    #[test]
    fn a_state_shares_the_stored_value() {
        let mut resources = Resources::default();
        resources.insert(vec![1, 2, 3]);
        let a = resources.get::<Vec<i32>>().unwrap();
        let b = resources.get::<Vec<i32>>().unwrap();
        assert!(Arc::ptr_eq(&a.clone().into_arc(), &b.into_arc()));
        assert_eq!(a.len(), 3);
        assert_eq!(format!("{a:?}"), "State([1, 2, 3])");
    }
}
