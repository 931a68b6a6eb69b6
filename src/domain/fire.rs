//! Fire states (DESIGN.md): `fired → running → succeeded | failed | timed_out | lost | cancelled`,
//! plus `misfired` and `skipped` recorded instead of a run.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FireState {
    Fired,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Lost,
    Cancelled,
    Misfired,
    Skipped,
}

impl FireState {
    pub const ALL: [FireState; 9] = [
        FireState::Fired,
        FireState::Running,
        FireState::Succeeded,
        FireState::Failed,
        FireState::TimedOut,
        FireState::Lost,
        FireState::Cancelled,
        FireState::Misfired,
        FireState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FireState::Fired => "fired",
            FireState::Running => "running",
            FireState::Succeeded => "succeeded",
            FireState::Failed => "failed",
            FireState::TimedOut => "timed_out",
            FireState::Lost => "lost",
            FireState::Cancelled => "cancelled",
            FireState::Misfired => "misfired",
            FireState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<FireState> {
        FireState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, FireState::Fired | FireState::Running)
    }

    /// Outcomes after which the job's retry policy may add an attempt.
    pub fn is_retryable_failure(self) -> bool {
        matches!(
            self,
            FireState::Failed | FireState::TimedOut | FireState::Lost
        )
    }
}

impl std::fmt::Display for FireState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
