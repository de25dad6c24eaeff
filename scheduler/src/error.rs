//! The one error type of the runtime.

use std::fmt;

use scheduler_core::ScheduleError;

/// Why a [`ServiceManager`](crate::ServiceManager) call failed.
///
/// `Debug` prints the message, as `Display` does, because `Debug` is what `unwrap()`, `expect()` and
/// a `main` that returns the error show; `{:#?}` shows the variant and its fields:
///
/// ```
/// let error = scheduler::Error::UnknownService("heartbeat".into());
/// assert_eq!(format!("{error:?}"), "unknown service 'heartbeat'");
/// assert_eq!(format!("{error:#?}"), "UnknownService(\n    \"heartbeat\",\n)");
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two `#[background_service]`s (or a registration and `add_service`) claim the same name.
    #[error("duplicate service name '{name}': registered at {first} and at {second}; give one of them `name = \"...\"`")]
    DuplicateService {
        /// The name both use.
        name: String,
        /// Where the first registration stands.
        first: String,
        /// Where the second registration stands.
        second: String,
    },
    /// A registered service whose schedule does not parse (the macro checks this at compile time, so
    /// it means a registration was made by hand).
    #[error("service '{name}': {source}")]
    InvalidSchedule {
        /// The service.
        name: String,
        /// Why its schedule was rejected.
        #[source]
        source: ScheduleError,
    },
    /// [`run_now`](crate::ServiceManager::run_now) while a run of the service is going or waiting
    /// for a worker: runs never overlap.
    #[error("service '{0}' is already running")]
    AlreadyRunning(String),
    /// An action that the service's state does not allow, such as pausing a stopped service.
    #[error("cannot {action} service '{name}': it is {state}")]
    InvalidState {
        /// The service.
        name: String,
        /// What was asked: `pause`, `run`.
        action: &'static str,
        /// The state it is in.
        state: crate::status::ServiceState,
    },
    /// No service of this name was ever added.
    #[error("unknown service '{0}'")]
    UnknownService(String),
    /// A builder option with a value it cannot take.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The configuration (file or environment) has problems; each is listed.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The coordinator could not answer.
    #[error("coordinator: {0}")]
    Coordinator(#[from] crate::coordinator::CoordinatorError),
    /// The manager has no coordinator, so there is no cluster to ask.
    #[error("this manager has no coordinator: there is no cluster-wide history")]
    NotCoordinated,
    /// The [state file](crate::ServiceManagerBuilder::state_file) cannot be read, is not one the
    /// manager wrote, or could never be written (its directory does not exist). The manager is not built: starting without it would silently skip the
    /// catch-up it exists for. Fix the file, or remove it to start afresh.
    #[error("state file {}: {reason}", path.display())]
    StateFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, with the line where it is.
        reason: String,
    },
    /// Services take [`State<T>`](crate::State) parameters of types the manager was not given
    /// with [`state`](crate::ServiceManagerBuilder::state): every such service, with every type
    /// it lacks (in parameter order). Nothing was added or started.
    #[error("{}", missing_state_message(.services))]
    MissingState {
        /// Each service that cannot be bound, by name, with the types it lacks.
        services: Vec<(String, Vec<&'static str>)>,
    },
    /// `start` was called outside a tokio runtime.
    #[error("the service manager must be started from within a tokio runtime")]
    NoRuntime,
}

/// "missing state: service 'a' takes State<A>, State<B>; service 'b' takes State<C>; give each
/// value with `ServiceManager::builder().state(value)`".
fn missing_state_message(services: &[(String, Vec<&'static str>)]) -> String {
    let each: Vec<String> = services
        .iter()
        .map(|(name, types)| {
            let types: Vec<String> = types.iter().map(|ty| format!("State<{ty}>")).collect();
            format!("service '{name}' takes {}", types.join(", "))
        })
        .collect();
    format!(
        "missing state: {}; give each value with `ServiceManager::builder().state(value)`",
        each.join("; ")
    )
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return fmt::Display::fmt(self, f);
        }
        match self {
            Error::DuplicateService {
                name,
                first,
                second,
            } => f
                .debug_struct("DuplicateService")
                .field("name", name)
                .field("first", first)
                .field("second", second)
                .finish(),
            Error::InvalidSchedule { name, source } => f
                .debug_struct("InvalidSchedule")
                .field("name", name)
                .field("source", source)
                .finish(),
            Error::UnknownService(name) => f.debug_tuple("UnknownService").field(name).finish(),
            Error::AlreadyRunning(name) => f.debug_tuple("AlreadyRunning").field(name).finish(),
            Error::InvalidState {
                name,
                action,
                state,
            } => f
                .debug_struct("InvalidState")
                .field("name", name)
                .field("action", action)
                .field("state", state)
                .finish(),
            Error::InvalidOption { option, reason } => f
                .debug_struct("InvalidOption")
                .field("option", option)
                .field("reason", reason)
                .finish(),
            Error::Config(config) => f.debug_tuple("Config").field(config).finish(),
            Error::Coordinator(error) => f.debug_tuple("Coordinator").field(error).finish(),
            Error::StateFile { path, reason } => f
                .debug_struct("StateFile")
                .field("path", path)
                .field("reason", reason)
                .finish(),
            Error::MissingState { services } => f
                .debug_struct("MissingState")
                .field("services", services)
                .finish(),
            Error::NotCoordinated => f.write_str("NotCoordinated"),
            Error::NoRuntime => f.write_str("NoRuntime"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_shows_the_message() {
        // The mistake itself: `start()` outside a runtime, unwrapped.
        let manager = crate::ServiceManager::builder()
            .build()
            .expect("a plain manager");
        let panic =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| manager.start().unwrap()))
                .expect_err("unwrap of an Err panics");
        let shown = panic
            .downcast_ref::<String>()
            .expect("unwrap panics with a formatted message");
        assert_eq!(
            shown,
            "called `Result::unwrap()` on an `Err` value: \
             the service manager must be started from within a tokio runtime"
        );
    }

    #[test]
    fn alternate_debug_shows_the_variant() {
        assert_eq!(format!("{:#?}", Error::NoRuntime), "NoRuntime");
        let option = Error::InvalidOption {
            option: "max_concurrent_jobs",
            reason: "0 is out of range".into(),
        };
        assert_eq!(
            format!("{option:?}"),
            "invalid option max_concurrent_jobs: 0 is out of range"
        );
        assert!(format!("{option:#?}")
            .starts_with("InvalidOption {\n    option: \"max_concurrent_jobs\","));
    }
}
