//! The one error type of the runtime.

use scheduler_core::ScheduleError;

/// Why a [`ServiceManager`](crate::ServiceManager) call failed.
#[derive(Debug, thiserror::Error)]
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
    /// `start` was called outside a tokio runtime.
    #[error("the service manager must be started from within a tokio runtime")]
    NoRuntime,
}
