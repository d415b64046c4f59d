//! 👍/👎 on answers, the platform-neutral part: the vote, the id a button carries (Discord's
//! `custom_id`, Slack's `action_id` + `value`), the answer id a finished answer's last message
//! is given its buttons for, and what the person who clicked is told.

use std::sync::{Arc, OnceLock};

/// A person's verdict on an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    Up,
    Down,
}

impl Vote {
    /// As the store keeps it: +1 or -1.
    pub fn as_i8(self) -> i8 {
        match self {
            Vote::Up => 1,
            Vote::Down => -1,
        }
    }

    pub fn emoji(self) -> &'static str {
        match self {
            Vote::Up => "👍",
            Vote::Down => "👎",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Vote::Up => "up",
            Vote::Down => "down",
        }
    }
}

/// What a button says it is: a vote on answer `answer`. Discord carries it in one `custom_id`
/// (`engram:vote:up:42`, at most 100 characters); Slack in an `action_id`
/// (`engram_vote_up`) and a `value` (`42`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteButton {
    pub vote: Vote,
    pub answer: i64,
}

impl VoteButton {
    pub const BOTH: [Vote; 2] = [Vote::Up, Vote::Down];

    pub fn custom_id(self) -> String {
        format!("engram:vote:{}:{}", self.vote.word(), self.answer)
    }

    /// A button's `custom_id`, if it is one of engram's votes.
    pub fn from_custom_id(id: &str) -> Option<Self> {
        let rest = id.strip_prefix("engram:vote:")?;
        let (vote, answer) = rest.split_once(':')?;
        Self::parse(vote, answer)
    }

    pub fn action_id(vote: Vote) -> String {
        format!("engram_vote_{}", vote.word())
    }

    /// A Slack action (`action_id`, `value`), if it is one of engram's votes.
    pub fn from_action(action_id: &str, value: &str) -> Option<Self> {
        Self::parse(action_id.strip_prefix("engram_vote_")?, value)
    }

    fn parse(vote: &str, answer: &str) -> Option<Self> {
        let vote = match vote {
            "up" => Vote::Up,
            "down" => Vote::Down,
            _ => return None,
        };
        // Digits only: no sign, no spaces, nothing `parse` would also take.
        if answer.is_empty() || answer.len() > 18 || !answer.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            vote,
            answer: answer.parse().ok()?,
        })
    }
}

/// The answer whose last message gets the buttons, known once the answer is recorded: the
/// producer sets it before it drops its sender, so whoever writes the final text can read it
/// then. Never set (no buttons) when the answer could not be recorded.
#[derive(Debug, Clone, Default)]
pub struct AnswerId(Arc<OnceLock<i64>>);

impl AnswerId {
    pub fn set(&self, id: i64) {
        let _ = self.0.set(id);
    }

    pub fn get(&self) -> Option<i64> {
        self.0.get().copied()
    }
}

/// What the person who clicked is told (privately).
pub fn recorded(vote: Vote) -> String {
    format!(
        "{} Thanks, your vote is recorded. Click the other button to change it.",
        vote.emoji()
    )
}

/// Told when the answer clicked on is not one of this server's or workspace's answers.
pub const NOT_HERE: &str = "That answer isn't one of this server's or workspace's answers, so the \
                            vote was not recorded.";

/// Told when the store could not take the vote.
pub const NOT_NOW: &str =
    "Your vote could not be recorded right now. Please click again in a minute.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_button_id_round_trips_on_both_platforms() {
        for vote in VoteButton::BOTH {
            let button = VoteButton { vote, answer: 42 };
            assert_eq!(
                VoteButton::from_custom_id(&button.custom_id()),
                Some(button)
            );
            assert_eq!(
                VoteButton::from_action(&VoteButton::action_id(vote), "42"),
                Some(button)
            );
        }
        let longest = VoteButton {
            vote: Vote::Down,
            answer: i64::MAX,
        };
        assert!(
            longest.custom_id().len() <= 100,
            "Discord's custom_id limit"
        );
    }

    #[test]
    fn anything_else_is_not_a_vote() {
        for id in [
            "",
            "engram:vote:up",
            "engram:vote:up:",
            "engram:vote:sideways:1",
            "engram:vote:up:-1",
            "engram:vote:up:+1",
            "engram:vote:up: 1",
            "engram:vote:up:1:2",
            "engram:vote:up:99999999999999999999",
            "other:vote:up:1",
        ] {
            assert_eq!(VoteButton::from_custom_id(id), None, "{id:?}");
        }
        assert_eq!(VoteButton::from_action("engram_vote_up", "x"), None);
        assert_eq!(VoteButton::from_action("vote_up", "1"), None);
    }

    #[test]
    fn an_answer_id_is_set_once() {
        let id = AnswerId::default();
        assert_eq!(id.get(), None);
        let seen = id.clone();
        id.set(7);
        id.set(8);
        assert_eq!(seen.get(), Some(7));
    }
}
