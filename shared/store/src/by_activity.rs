//! All of a user's conversations by last activity, archived or not: the active and the
//! archived partitions of `ByStateActivity`, read side by side and merged, newest first. One
//! index serves the three listings by activity, so an append moves one index entry where a
//! second index (`ByActivity`, keyed by the owner alone) moved two more.

use std::collections::BTreeMap;

use domain::cursor::Position;
use domain::error::Error;
use domain::keys::{self, Index};
use domain::model::UserId;

use super::{ConversationItem, Store};

/// The two partitions, by the name each one's part of a position carries.
const PARTS: [(&str, bool); 2] = [("active", false), ("archived", true)];
/// A part's position when it has nothing more.
const DONE: &str = "done";

/// Where a merged walk stands in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stand {
    Start,
    After(Position),
    Done,
}

/// Where a merged walk stands in both partitions, as one position: each part's attributes
/// under its name (`active.PK`, …; `archived.done`). A position of another form (a cursor of
/// the single index this replaced) starts both parts from the top.
fn stands_of(position: Option<Position>) -> [Stand; 2] {
    let position = position.unwrap_or_default();
    PARTS.map(|(name, _)| {
        let prefix = format!("{name}.");
        let part: Position = position
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone())))
            .collect();
        if part.contains_key(DONE) {
            Stand::Done
        } else if part.is_empty() {
            Stand::Start
        } else {
            Stand::After(part)
        }
    })
}

fn position_of_stands(stands: &[Stand; 2]) -> Position {
    let mut position = Position::new();
    for ((name, _), stand) in PARTS.iter().zip(stands) {
        match stand {
            Stand::Start => {}
            Stand::After(part) => {
                position.extend(part.iter().map(|(k, v)| (format!("{name}.{k}"), v.clone())))
            }
            Stand::Done => {
                position.insert(format!("{name}.{DONE}"), "1".to_owned());
            }
        }
    }
    position
}

/// Where a conversation stands in `ByStateActivity`.
fn activity_position(item: &ConversationItem) -> Position {
    BTreeMap::from([
        (keys::PK.to_owned(), item.pk.clone()),
        (keys::SK.to_owned(), item.sk.clone()),
        (keys::OWNER_STATE.to_owned(), item.owner_state.clone()),
        (
            keys::LAST_ACTIVITY.to_owned(),
            keys::sortable_time(item.last_activity),
        ),
    ])
}

/// What one partition gave: its items not yet taken, and where it continues after them.
struct Part {
    items: std::collections::VecDeque<ConversationItem>,
    next: Option<Position>,
}

impl Store {
    /// Up to `limit` of the user's conversations, archived or not, by last activity, newest
    /// first, after `start` (a position this handed out), each with the position after it;
    /// and where the walk continues, unless it is over (past the last found, or, when a
    /// `search` filter found none in the pages it may read, past those). With `search`, only
    /// those whose title has it (each partition filtered as `list_conversations` filters).
    pub async fn all_by_activity(
        &self,
        user: &UserId,
        limit: usize,
        start: Option<Position>,
        search: Option<&str>,
    ) -> Result<(Vec<(Position, ConversationItem)>, Option<Position>), Error> {
        let mut stands = stands_of(start);
        let reads = PARTS
            .iter()
            .zip(stands.clone())
            .map(|((_, archived), stand)| {
                let partition = keys::owner_state(user, *archived);
                async move {
                    let start = match stand {
                        Stand::Done => return Ok(None),
                        Stand::Start => None,
                        Stand::After(position) => Some(position),
                    };
                    let (items, next) = self
                        .list_conversations(
                            Index::ByStateActivity,
                            &partition,
                            limit,
                            start,
                            search,
                        )
                        .await?;
                    Ok::<_, Error>(Some(Part {
                        items: items.into(),
                        next,
                    }))
                }
            });
        let [active, archived] = futures::future::try_join_all(reads)
            .await?
            .try_into()
            .map_err(|_| Error::internal("list conversations", "two partitions"))?;
        let mut parts = [active, archived];
        // A part that gave nothing (it holds nothing more, or its filtered pages found none)
        // moves on to where its read stopped.
        for (stand, part) in stands.iter_mut().zip(&mut parts) {
            if let Some(empty) = part.take_if(|p| p.items.is_empty()) {
                *stand = empty.next.map_or(Stand::Done, Stand::After);
            }
        }
        let mut found = Vec::new();
        while found.len() < limit {
            // The newer head of the two (ties: the greater key, so every page agrees).
            let newest = (0..2)
                .filter_map(|i| Some((i, parts[i].as_ref()?.items.front()?)))
                .max_by(|(_, a), (_, b)| (a.last_activity, &a.pk).cmp(&(b.last_activity, &b.pk)))
                .map(|(i, _)| i);
            let Some(i) = newest else { break };
            let part = parts[i].as_mut().expect("a part with a head");
            let item = part.items.pop_front().expect("its head");
            stands[i] = if part.items.is_empty() {
                // All it gave is taken: on from where its read stopped, or done.
                match part.next.take() {
                    Some(next) => Stand::After(next),
                    None => Stand::Done,
                }
            } else {
                Stand::After(activity_position(&item))
            };
            found.push((position_of_stands(&stands), item));
        }
        let more = stands.iter().any(|s| *s != Stand::Done);
        Ok((found, more.then(|| position_of_stands(&stands))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_position_gives_back_each_part() {
        let after = Position::from([
            ("PK".to_owned(), "USER#u#CONV#c".to_owned()),
            ("lastActivity".to_owned(), "2026".to_owned()),
        ]);
        let stands = [Stand::After(after), Stand::Done];
        assert_eq!(stands_of(Some(position_of_stands(&stands))), stands);
        assert_eq!(stands_of(None), [Stand::Start, Stand::Start]);
        // A position of the single index this replaced: both from the top.
        let old = Position::from([("owner".to_owned(), "USER#u".to_owned())]);
        assert_eq!(stands_of(Some(old)), [Stand::Start, Stand::Start]);
    }
}
