//! All of a user's conversations by last activity, archived or not: the active and the
//! archived partitions of `ByStateActivity`, read side by side and merged, newest first. One
//! index serves the three listings by activity, so an append moves one index entry where a
//! second index (`ByActivity`, keyed by the owner alone) moved two more.

use std::collections::{BTreeMap, VecDeque};

use domain::cursor::Position;
use domain::error::Error;
use domain::keys::{self, Index};
use domain::model::UserId;

use super::{ConversationItem, Store};

/// The two partitions, by the name each one's part of a position carries.
const PARTS: [(&str, bool); 2] = [("active", false), ("archived", true)];
/// The last activity of the last conversation a walk returned, in its position.
const FRONTIER: &str = "frontier";
/// That conversation's key (positions handed out before it was kept have none).
const FRONTIER_KEY: &str = "frontierKey";

/// Where a merged walk stands: each partition's position (none: from its top), and the last
/// activity and key of the last conversation returned (none: nothing returned yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Walk {
    parts: [Option<Position>; 2],
    frontier: Option<String>,
    frontier_key: Option<String>,
}

impl Walk {
    /// A walk from a position this handed out: each part's attributes under its name
    /// (`active.PK`, …), the frontier under its own. A position of another form (a cursor
    /// of the single index this replaced) starts from the top.
    fn of(position: Option<Position>) -> Self {
        let position = position.unwrap_or_default();
        let parts = PARTS.map(|(name, _)| {
            let prefix = format!("{name}.");
            let part: Position = position
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone())))
                .collect();
            // Only the attributes of an index position go back to DynamoDB.
            let whole = Index::ByStateActivity
                .key_attributes()
                .iter()
                .all(|name| part.contains_key(*name));
            (whole && part.len() == 4).then_some(part)
        });
        Self {
            parts,
            frontier: position.get(FRONTIER).cloned(),
            frontier_key: position.get(FRONTIER_KEY).cloned(),
        }
    }

    /// Whether `item` comes after what the walk returned: below the frontier, or at it and not
    /// the conversation returned there (which an archive or a restore moves to the other
    /// partition without changing its activity).
    fn has_not_returned(&self, item: &ConversationItem) -> bool {
        let Some(frontier) = self.frontier.as_deref() else {
            return true;
        };
        let activity = keys::sortable_time(item.last_activity);
        activity.as_str() < frontier
            || (activity.as_str() == frontier
                && self.frontier_key.as_deref() != Some(item.pk.as_str()))
    }

    fn position(&self) -> Position {
        let mut position = Position::new();
        for ((name, _), part) in PARTS.iter().zip(&self.parts) {
            for (k, v) in part.iter().flatten() {
                position.insert(format!("{name}.{k}"), v.clone());
            }
        }
        if let Some(frontier) = &self.frontier {
            position.insert(FRONTIER.to_owned(), frontier.clone());
        }
        if let Some(key) = &self.frontier_key {
            position.insert(FRONTIER_KEY.to_owned(), key.clone());
        }
        position
    }
}

/// Where a conversation stands in `ByStateActivity`.
fn activity_position(item: &ConversationItem) -> Position {
    BTreeMap::from([
        (keys::PK.to_owned(), item.pk.as_str().to_owned()),
        (keys::SK.to_owned(), item.sk.clone()),
        (keys::OWNER_STATE.to_owned(), item.owner_state.clone()),
        (
            keys::LAST_ACTIVITY.to_owned(),
            keys::sortable_time(item.last_activity),
        ),
    ])
}

/// What one partition gave: its items not yet taken, and where its read stopped if there is
/// more to read.
struct Part {
    items: VecDeque<ConversationItem>,
    next: Option<Position>,
}

impl Part {
    /// The last activity below which this part has not read yet (its read stopped there).
    fn unread_below(&self) -> Option<&str> {
        self.next
            .as_ref()
            .and_then(|next| next.get(keys::LAST_ACTIVITY))
            .map(String::as_str)
    }
}

impl Store {
    /// Up to `limit` of the user's conversations, archived or not, by last activity, newest
    /// first, after `start` (a position this handed out), each with the position after it;
    /// and where the walk continues, unless it is over. With `search`, only those whose title
    /// has it (each partition filtered as `list_conversations` filters; a page may then hold
    /// fewer while the walk goes on).
    ///
    /// Each partition continues from its own position; a conversation archived or restored
    /// during the walk moves to the other partition, so what either returns above the
    /// frontier (the last activity already returned), or at it under the key returned there,
    /// was listed before and is passed over,
    /// and a partition that ran out is read again from where it ended (a conversation may
    /// have moved in below the frontier).
    pub async fn all_by_activity(
        &self,
        user: &UserId,
        limit: usize,
        start: Option<Position>,
        search: Option<&str>,
    ) -> Result<(Vec<(Position, ConversationItem)>, Option<Position>), Error> {
        let mut walk = Walk::of(start);
        let reads = PARTS
            .iter()
            .zip(walk.parts.clone())
            .map(|((_, archived), start)| {
                let partition = keys::owner_state(user, *archived);
                async move {
                    self.list_conversations(
                        Index::ByStateActivity,
                        &partition,
                        limit,
                        start,
                        search,
                    )
                    .await
                }
            });
        let read = futures::future::try_join_all(reads).await?;
        let mut parts: Vec<Part> = read
            .into_iter()
            .map(|(items, next)| Part {
                items: items.into(),
                next,
            })
            .collect();
        let returned = walk.clone();
        for (i, part) in parts.iter_mut().enumerate() {
            let last_read = part.items.back().map(activity_position);
            // Above the frontier, or the one returned at it: listed before it moved here.
            part.items.retain(|item| returned.has_not_returned(item));
            if part.items.is_empty() {
                // Nothing to take: on from where its read stopped (or after what it read).
                if let Some(position) = part.next.clone().or(last_read) {
                    walk.parts[i] = Some(position);
                }
            }
        }
        let mut found = Vec::new();
        while found.len() < limit {
            // The newer head of the two (ties: the greater key, so every page agrees).
            let newest = (0..2)
                .filter_map(|i| Some((i, parts[i].items.front()?)))
                .max_by(|(_, a), (_, b)| (a.last_activity, &a.pk).cmp(&(b.last_activity, &b.pk)))
                .map(|(i, item)| (i, keys::sortable_time(item.last_activity)));
            let Some((i, time)) = newest else { break };
            // A part whose read stopped above this one may hold newer conversations unread.
            if parts
                .iter()
                .any(|p| p.items.is_empty() && p.unread_below().is_some_and(|b| b > time.as_str()))
            {
                break;
            }
            let part = &mut parts[i];
            let item = part.items.pop_front().expect("its head");
            walk.parts[i] = Some(match (part.items.is_empty(), part.next.clone()) {
                // All it gave is taken: on from where its read stopped.
                (true, Some(next)) => next,
                _ => activity_position(&item),
            });
            walk.frontier = Some(time);
            walk.frontier_key = Some(item.pk.as_str().to_owned());
            found.push((walk.position(), item));
        }
        let more = parts
            .iter()
            .any(|p| !p.items.is_empty() || p.next.is_some());
        Ok((found, more.then(|| walk.position())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::model::ConversationId;

    #[test]
    fn the_conversation_returned_at_the_frontier_is_passed_over_and_others_at_it_are_not() {
        let user = UserId::parse("u").unwrap();
        let at = chrono::Utc::now();
        let returned = ConversationItem::new(&user, ConversationId::generate(), None, vec![], at);
        let tied = ConversationItem::new(&user, ConversationId::generate(), None, vec![], at);
        let walk = Walk {
            parts: [None, None],
            frontier: Some(keys::sortable_time(at)),
            frontier_key: Some(returned.pk.as_str().to_owned()),
        };
        assert!(!walk.has_not_returned(&returned));
        assert!(walk.has_not_returned(&tied));
        // A position handed out before the key was kept: everything at the frontier, as then.
        let earlier = Walk {
            frontier_key: None,
            ..walk
        };
        assert!(earlier.has_not_returned(&returned));
    }

    #[test]
    fn a_merged_position_gives_back_each_part() {
        let after = Position::from([
            ("PK".to_owned(), "USER#u#CONV#c".to_owned()),
            ("SK".to_owned(), "META".to_owned()),
            ("ownerState".to_owned(), "USER#u#ACTIVE".to_owned()),
            ("lastActivity".to_owned(), "2026".to_owned()),
        ]);
        let walk = Walk {
            parts: [Some(after), None],
            frontier: Some("2026".to_owned()),
            frontier_key: Some("USER#u#CONV#c".to_owned()),
        };
        assert_eq!(Walk::of(Some(walk.position())), walk);
        assert_eq!(Walk::of(None), Walk::default());
        // A position of the single index this replaced, or of any other form: from the top.
        let old = Position::from([("owner".to_owned(), "USER#u".to_owned())]);
        assert_eq!(Walk::of(Some(old)), Walk::default());
        let odd = Position::from([("active.PK".to_owned(), "USER#u#CONV#c".to_owned())]);
        assert_eq!(Walk::of(Some(odd)), Walk::default());
    }
}
