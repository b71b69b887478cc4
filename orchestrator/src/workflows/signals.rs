//! Every workflow signal, defined once: its name (part of every recorded history, so it never
//! changes), its payload type and the workflow that receives it. The workflows register their
//! handlers under these names, the store records intents through [`Signal`], and the relay
//! reads them back as [`Delivery`], whose exhaustive matches make a signal that one of them
//! forgot fail to compile.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::approval::{ApproverWithdrawn, ChainCancelled, DecisionMade};
use super::playbook::{CancelRun, RetryRun, TicketChanged};
use super::ticket::{AssignmentChanged, CommentAdded, PriorityChanged, SlaRebuilt, StatusChanged};

/// The names, as the workflows' `#[signal(name = ...)]` attributes and the outbox spell them.
/// (Paths, never bare identifiers: the SDK's macro matches on them.)
pub mod names {
    pub const STATUS_CHANGED: &str = "status_changed";
    pub const PRIORITY_CHANGED: &str = "priority_changed";
    pub const ASSIGNMENT_CHANGED: &str = "assignment_changed";
    pub const COMMENT_ADDED: &str = "comment_added";
    pub const SLA_REBUILT: &str = "sla_rebuilt";
    pub const DECISION: &str = "decision";
    pub const WITHDRAW: &str = "withdraw";
    pub const CANCEL: &str = "cancel";
    pub const PLAYBOOK_TICKET_CHANGED: &str = "playbook.ticket_changed";
    pub const PLAYBOOK_RETRY: &str = "playbook.retry";
    pub const PLAYBOOK_CANCEL: &str = "playbook.cancel";
}

/// Which workflow a signal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// `TicketWorkflow` (`<tenant>/<number>`).
    Ticket,
    /// `ApprovalChainWorkflow` (an approval's chain).
    ApprovalChain,
    /// `PlaybookRunWorkflow` (one run of a playbook on a ticket).
    PlaybookRun,
}

/// A signal payload: what it is called and who receives it.
pub trait Signal: Serialize + DeserializeOwned {
    const NAME: &'static str;
    const RECEIVER: Receiver;
}

macro_rules! signals {
    ($($payload:ty => $name:path, $receiver:ident;)*) => {
        $(impl Signal for $payload {
            const NAME: &'static str = $name;
            const RECEIVER: Receiver = Receiver::$receiver;
        })*
    };
}

signals! {
    StatusChanged => names::STATUS_CHANGED, Ticket;
    PriorityChanged => names::PRIORITY_CHANGED, Ticket;
    AssignmentChanged => names::ASSIGNMENT_CHANGED, Ticket;
    CommentAdded => names::COMMENT_ADDED, Ticket;
    SlaRebuilt => names::SLA_REBUILT, Ticket;
    DecisionMade => names::DECISION, ApprovalChain;
    ApproverWithdrawn => names::WITHDRAW, ApprovalChain;
    ChainCancelled => names::CANCEL, ApprovalChain;
    TicketChanged => names::PLAYBOOK_TICKET_CHANGED, PlaybookRun;
    RetryRun => names::PLAYBOOK_RETRY, PlaybookRun;
    CancelRun => names::PLAYBOOK_CANCEL, PlaybookRun;
}

/// A ticket workflow's signal, read back from the outbox.
#[derive(Debug, Clone)]
pub enum TicketSignal {
    StatusChanged(StatusChanged),
    PriorityChanged(PriorityChanged),
    AssignmentChanged(AssignmentChanged),
    CommentAdded(CommentAdded),
    SlaRebuilt(SlaRebuilt),
}

/// An approval chain's signal, read back from the outbox.
#[derive(Debug, Clone)]
pub enum ChainSignal {
    Decision(DecisionMade),
    Withdraw(ApproverWithdrawn),
    Cancel(ChainCancelled),
}

/// A playbook run's signal, read back from the outbox.
#[derive(Debug, Clone)]
pub enum RunSignal {
    TicketChanged(TicketChanged),
    Retry(RetryRun),
    Cancel(CancelRun),
}

/// A recorded signal intent, ready to deliver.
#[derive(Debug, Clone)]
pub enum Delivery {
    Ticket(Box<TicketSignal>),
    ApprovalChain(ChainSignal),
    PlaybookRun(RunSignal),
}

#[derive(Debug, thiserror::Error)]
pub enum UnknownSignal {
    #[error("unknown signal {0}")]
    Name(String),
    #[error("bad payload for signal {name}: {source}")]
    Payload { name: &'static str, source: serde_json::Error },
}

fn payload<S: Signal>(v: serde_json::Value) -> Result<S, UnknownSignal> {
    serde_json::from_value(v).map_err(|source| UnknownSignal::Payload { name: S::NAME, source })
}

impl Delivery {
    /// Reads a recorded intent (its name and JSON payload).
    pub fn parse(name: &str, v: serde_json::Value) -> Result<Self, UnknownSignal> {
        use ChainSignal as C;
        use TicketSignal as T;
        Ok(match name {
            names::STATUS_CHANGED => Self::Ticket(Box::new(T::StatusChanged(payload(v)?))),
            names::PRIORITY_CHANGED => Self::Ticket(Box::new(T::PriorityChanged(payload(v)?))),
            names::ASSIGNMENT_CHANGED => Self::Ticket(Box::new(T::AssignmentChanged(payload(v)?))),
            names::COMMENT_ADDED => Self::Ticket(Box::new(T::CommentAdded(payload(v)?))),
            names::SLA_REBUILT => Self::Ticket(Box::new(T::SlaRebuilt(payload(v)?))),
            names::DECISION => Self::ApprovalChain(C::Decision(payload(v)?)),
            names::WITHDRAW => Self::ApprovalChain(C::Withdraw(payload(v)?)),
            names::CANCEL => Self::ApprovalChain(C::Cancel(payload(v)?)),
            names::PLAYBOOK_TICKET_CHANGED => Self::PlaybookRun(RunSignal::TicketChanged(payload(v)?)),
            names::PLAYBOOK_RETRY => Self::PlaybookRun(RunSignal::Retry(payload(v)?)),
            names::PLAYBOOK_CANCEL => Self::PlaybookRun(RunSignal::Cancel(payload(v)?)),
            other => return Err(UnknownSignal::Name(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use temporalio_workflow::common::SignalDefinition;

    use super::*;
    use crate::workflows::approval::ApprovalChainWorkflow;
    use crate::workflows::ticket::TicketWorkflow;

    /// The names the workflows registered (through the SDK's generated definitions) are the
    /// ones the store records and the relay reads.
    #[test]
    fn workflows_register_the_defined_names() {
        let registered = [
            (TicketWorkflow::status_changed.name().to_owned(), StatusChanged::NAME),
            (TicketWorkflow::priority_changed.name().to_owned(), PriorityChanged::NAME),
            (TicketWorkflow::assignment_changed.name().to_owned(), AssignmentChanged::NAME),
            (TicketWorkflow::comment_added.name().to_owned(), CommentAdded::NAME),
            (TicketWorkflow::sla_rebuilt.name().to_owned(), SlaRebuilt::NAME),
            (ApprovalChainWorkflow::decision.name().to_owned(), DecisionMade::NAME),
            (ApprovalChainWorkflow::withdraw.name().to_owned(), ApproverWithdrawn::NAME),
            (ApprovalChainWorkflow::cancel.name().to_owned(), ChainCancelled::NAME),
        ];
        for (workflow, defined) in registered {
            assert_eq!(workflow, defined);
        }
    }

    #[test]
    fn recorded_intents_read_back_by_name() {
        let v = serde_json::json!({"reason": "the ticket was cancelled"});
        assert!(matches!(Delivery::parse("cancel", v.clone()), Ok(Delivery::ApprovalChain(ChainSignal::Cancel(_)))));
        assert!(matches!(Delivery::parse("cancelled", v.clone()), Err(UnknownSignal::Name(_))));
        assert!(matches!(Delivery::parse("status_changed", v), Err(UnknownSignal::Payload { .. })));
    }
}
