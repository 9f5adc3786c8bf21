//! A conversation as a tree of branches (docs/design/message-tree.md, docs/data-model.md,
//! "Branches").
//!
//! A **branch** is a run of messages kept in slots of one number (`keys::Slot::branch`): the
//! trunk, 0, holds every conversation as it was before it branched (its time-keyed messages,
//! then its slots). Every message's parent is the message before it on its branch; a branch's
//! first message's parent is its **fork** point, a message of another branch (or the root:
//! none). Appending never names a parent, so adding to the tree never rewrites it.
//!
//! The **active path** is the branch the conversation shows and appends to, from the root:
//! its ancestors' segments, each up to the message the next one forks at, then the active
//! branch to its tip. Reading the conversation reads the path, newest first.

use serde::{Deserialize, Serialize};

use crate::keys::{self, MessagePlace, MessageSortKey};

/// A branch's number.
pub type BranchNumber = u16;

/// The trunk: every conversation's first branch.
pub const TRUNK: BranchNumber = 0;

/// The most branches a conversation can hold (numbers 1 to this; the trunk is 0).
pub const MAX_BRANCHES: BranchNumber = BranchNumber::MAX;

/// The branch a message's key puts it on: its slot's, or the trunk for a time-keyed message.
pub fn branch_of(key: &MessageSortKey) -> BranchNumber {
    match key.place() {
        MessagePlace::Slot(slot) => slot.branch,
        MessagePlace::Timed { .. } => TRUNK,
    }
}

/// One run of the active path: a branch, read up to the message the next segment forks at
/// (`through`, its sort key), or to its end for the last segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    #[serde(rename = "b")]
    pub branch: BranchNumber,
    #[serde(rename = "to", default, skip_serializing_if = "Option::is_none")]
    pub through: Option<String>,
}

impl Segment {
    /// The inclusive sort-key range this segment reads.
    pub fn range(&self) -> (String, String) {
        let (low, high) = keys::branch_range(self.branch);
        (low, self.through.clone().unwrap_or(high))
    }

    /// Whether the message under `key` is on this segment.
    pub fn holds(&self, key: &MessageSortKey) -> bool {
        branch_of(key) == self.branch
            && self
                .through
                .as_deref()
                .is_none_or(|through| key.as_str() <= through)
    }
}

/// The active path from the root: never empty; the last segment is the active branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Path(Vec<Segment>);

impl Path {
    /// A conversation that never branched: the trunk.
    pub fn trunk() -> Self {
        Self(vec![Segment {
            branch: TRUNK,
            through: None,
        }])
    }

    pub fn from_segments(segments: Vec<Segment>) -> Option<Self> {
        let valid = segments.last().is_some_and(|last| last.through.is_none())
            && segments[..segments.len() - 1]
                .iter()
                .all(|segment| segment.through.is_some());
        valid.then_some(Self(segments))
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn active_branch(&self) -> BranchNumber {
        self.0.last().map_or(TRUNK, |segment| segment.branch)
    }

    /// The path of a new branch forked at `parent` (a message on this path; `None`: the root),
    /// this path cut at `parent`, then the new branch.
    pub fn forked_at(&self, parent: Option<&MessageSortKey>, branch: BranchNumber) -> Self {
        let mut segments = Vec::new();
        if let Some(parent) = parent {
            for segment in &self.0 {
                if segment.holds(parent) {
                    segments.push(Segment {
                        branch: segment.branch,
                        through: Some(parent.as_str().to_owned()),
                    });
                    break;
                }
                segments.push(segment.clone());
            }
        }
        segments.push(Segment {
            branch,
            through: None,
        });
        Self(segments)
    }

    /// The path from the root to the message under `key`, ending there: what a share link
    /// shows (read as any path is, never appended to). `None` if `key` is not on this path.
    pub fn ending_at(&self, key: &MessageSortKey) -> Option<Self> {
        let index = self.segment_of(key)?;
        let mut segments = self.0[..=index].to_vec();
        if let Some(last) = segments.last_mut() {
            last.through = Some(key.as_str().to_owned());
        }
        Some(Self(segments))
    }

    /// The index of the segment that holds `key`, if it is on the path.
    pub fn segment_of(&self, key: &MessageSortKey) -> Option<usize> {
        self.0.iter().position(|segment| segment.holds(key))
    }
}

/// A message's place among its siblings (the messages with the same parent, in the order they
/// were made: the parent's next message on its own branch first, then the branches forked at
/// the parent by number), as the app shows it: "2 / 3".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Siblings {
    /// How many messages share its parent, itself included (1: it has none).
    pub count: u32,
    /// Its position among them, from 1.
    pub position: u32,
}

impl Siblings {
    pub const ONLY: Self = Self {
        count: 1,
        position: 1,
    };

    /// The siblings of a message on `branch` whose parent is on `parent_branch` (the trunk for
    /// the root), where `forks` are the branches forked at that parent, in number order, and
    /// `next_on_parent_branch` says whether the parent's own branch goes on after it (always,
    /// for a message on that branch; not once a delete took that message).
    pub fn of(
        branch: BranchNumber,
        parent_branch: BranchNumber,
        forks: &[BranchNumber],
        next_on_parent_branch: bool,
    ) -> Self {
        let forks_count = u32::try_from(forks.len()).unwrap_or(u32::MAX - 1);
        if branch == parent_branch {
            return Self {
                count: 1 + forks_count,
                position: 1,
            };
        }
        let before = u32::from(next_on_parent_branch);
        match forks.iter().position(|&fork| fork == branch) {
            Some(index) => Self {
                count: before + forks_count,
                position: before + 1 + u32::try_from(index).unwrap_or(u32::MAX - 2),
            },
            // A branch whose fork mark is not read (never written): only itself.
            None => Self::ONLY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Slot;

    fn at(branch: BranchNumber, number: u64) -> MessageSortKey {
        MessageSortKey::at_slot(Slot { branch, number })
    }

    #[test]
    fn a_fork_cuts_the_path_at_its_parent_and_ends_in_the_new_branch() {
        let path = Path::trunk().forked_at(Some(&at(0, 4)), 1);
        assert_eq!(
            path.segments(),
            [
                Segment {
                    branch: 0,
                    through: Some(at(0, 4).as_str().to_owned())
                },
                Segment {
                    branch: 1,
                    through: None
                },
            ]
        );
        let deeper = path.forked_at(Some(&at(0, 2)), 2);
        assert_eq!(deeper.segments().len(), 2);
        assert_eq!(
            deeper.segments()[0].through.as_deref(),
            Some(at(0, 2).as_str())
        );
        assert_eq!(deeper.active_branch(), 2);
        let from_root = deeper.forked_at(None, 3);
        assert_eq!(from_root.segments().len(), 1);
        assert_eq!(from_root.active_branch(), 3);
    }

    #[test]
    fn a_segment_holds_its_branch_up_to_its_fork() {
        let path = Path::trunk().forked_at(Some(&at(0, 4)), 1);
        assert_eq!(path.segment_of(&at(0, 3)), Some(0));
        assert_eq!(path.segment_of(&at(0, 4)), Some(0));
        assert_eq!(path.segment_of(&at(0, 5)), None);
        assert_eq!(path.segment_of(&at(1, 9)), Some(1));
        assert_eq!(path.segment_of(&at(2, 1)), None);
    }

    #[test]
    fn siblings_count_the_next_message_then_the_forks_by_number() {
        assert_eq!(Siblings::of(0, 0, &[], true), Siblings::ONLY);
        assert_eq!(
            Siblings::of(0, 0, &[1, 3], true),
            Siblings {
                count: 3,
                position: 1
            }
        );
        assert_eq!(
            Siblings::of(3, 0, &[1, 3], true),
            Siblings {
                count: 3,
                position: 3
            }
        );
        assert_eq!(
            Siblings::of(1, 0, &[1, 3], true),
            Siblings {
                count: 3,
                position: 2
            }
        );
    }

    #[test]
    fn a_parent_whose_next_message_was_deleted_has_only_its_forks_as_children() {
        assert_eq!(
            Siblings::of(3, 0, &[1, 3], false),
            Siblings {
                count: 2,
                position: 2
            }
        );
        assert_eq!(Siblings::of(1, 0, &[1], false), Siblings::ONLY);
    }

    #[test]
    fn a_path_is_stored_as_it_was_made() {
        let path = Path::trunk().forked_at(Some(&at(0, 4)), 1);
        let json = serde_json::to_string(&path).unwrap();
        assert_eq!(json, r#"[{"b":0,"to":"MESSAGE#~0000#0000000004"},{"b":1}]"#);
        let back: Path = serde_json::from_str(&json).unwrap();
        assert_eq!(back, path);
        assert!(Path::from_segments(vec![]).is_none());
    }
}
