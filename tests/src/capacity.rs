//! What DynamoDB bills for a request, in on-demand write and read request units, computed
//! from item images by DynamoDB's documented rules. The local DynamoDB server (moto) does not
//! report consumed capacity faithfully, so a benchmark meters the service with these pure
//! rules instead: it hands over the item as it was before a write and as it is after, or the
//! bytes a read went through, and gets back the units AWS would charge. Nothing here does I/O.
//!
//! # Sources
//!
//! - Item sizes and formats:
//!   <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>
//! - DynamoDB read and write operations (capacity unit consumption):
//!   <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html>
//! - Global secondary indexes, provisioned throughput and storage considerations:
//!   <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations>
//! - Capacity management for transactions:
//!   <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-capacity-handling>
//! - The same pages' text as published in the (archived) guide's source,
//!   <https://github.com/awsdocs/amazon-dynamodb-developer-guide> (`doc_source/CapacityUnitCalculations.md`,
//!   `GSI.md`, `transaction-apis.md`).
//!
//! # Rules
//!
//! Sizes ([`item_bytes`]): an item is the sum over its attributes of the UTF-8 bytes of the
//! name plus the value's size. A string is its UTF-8 bytes; a binary its raw bytes; a number
//! 1 byte per two significant digits (leading and trailing zeroes trimmed, at most 38) plus
//! 1 byte; null and boolean 1 byte; a list or map 3 bytes plus, for each element, the
//! element's size and 1 byte (a map element's size includes its key's bytes, as an attribute
//! name's would).
//!
//! Writes ([`write_units`]): 1 write unit per 1 KB (1,024 bytes), rounded up, of the larger of
//! the item before and after the write, for `PutItem`, `UpdateItem` and `DeleteItem` alike;
//! `BatchWriteItem` charges each item separately. A conditional write whose condition fails
//! still costs the size of the existing item, or 1 unit when there is no item; a delete of a
//! missing item likewise costs 1 unit: never less than 1 unit per item written. In
//! `TransactWriteItems` every item costs twice that (one write to prepare, one to commit),
//! a `ConditionCheck` included.
//!
//! Index writes: a global secondary index pays only when the write changes its entry.
//! Adding an entry (a new item with the index's key attributes, or an update that gives an
//! item those attributes) is 1 write of the entry's size; changing an index key attribute's
//! value is 2 (delete the old entry, put the new one); removing an entry (a delete, or an
//! update that removes an index key attribute) is 1 write of the old entry's size; changing
//! only projected attributes is 1 write; neither keys nor projected attributes changing, or
//! the item in the index neither before nor after, costs nothing. An entry is the table's
//! keys, the index's keys and the projected attributes ([`IndexShape::entry`]), and its size
//! is measured like an item's; larger entries cost more units by the same 1 KB rounding.
//!
//! Reads ([`read_units`]): 1 read unit per 4 KB (4,096 bytes), rounded up, for a strongly
//! consistent read; half that for an eventually consistent one; twice it for a transactional
//! one. `GetItem` rounds its item; `BatchGetItem` rounds each item separately; `Query` (and
//! `Scan`) sums the sizes of the items it evaluated (not only those it returned) and rounds
//! the sum once. A read that finds nothing still costs the minimum (1 unit, or 0.5 eventually
//! consistent). A query of an index sums the sizes of the index entries.
//!
//! # Approximations and choices the documentation leaves open
//!
//! - Numbers: the documentation's rule is itself "approximately". DynamoDB actually stores
//!   numbers as base-100 digits aligned on the decimal point, with an extra byte for negative
//!   numbers (so `1.5` is measured here as 2 bytes where the stored form is likely 3); this
//!   module follows the documented rule, which can be a byte or two short per number.
//! - Sets (`SS`, `NS`, `BS`): the size pages do not mention them; a set is measured as the sum
//!   of its elements' sizes (each as the scalar of its type), with no overhead, as public
//!   calculators derived from measurements do (<https://github.com/zaccharles/dynamodb-calculator>).
//! - Index entry size: the GSI page gives an entry's bytes as the table's key, the index key
//!   and the projected attributes, plus 100 bytes of overhead; that overhead is stated for
//!   storage only (as the table item's own per-item overhead is), so it is not counted for
//!   write units here.
//! - Changing only projected attributes: the documentation says one write; it is sized here,
//!   like a table update, on the larger of the old and new entries.
//! - Transactions and indexes: the documentation doubles the reads or writes "of every item
//!   in the transaction" and says nothing of indexes; it also says a committed transaction's
//!   changes propagate to global secondary indexes afterwards, outside prepare and commit. So
//!   only the table's units are doubled and each index pays what the same write pays outside
//!   a transaction. A third party reports the same from measuring real DynamoDB
//!   (<https://github.com/nubo-db/dynoxide/pull/188>); AWS does not document it.
//! - Attribute names count their UTF-8 bytes (as the current size page says; older text said
//!   "length of attribute name").

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

/// An item as the SDK holds it: attribute names to values.
pub type Item = HashMap<String, AttributeValue>;

/// The table's partition key attribute.
pub const TABLE_PARTITION_KEY: &str = "PK";
/// The table's sort key attribute.
pub const TABLE_SORT_KEY: &str = "SK";

/// Bytes per write request unit.
pub const WRITE_UNIT_BYTES: usize = 1024;
/// Bytes per read request unit (strongly consistent).
pub const READ_UNIT_BYTES: usize = 4096;

/// The most significant digits a DynamoDB number holds.
const MAX_SIGNIFICANT_DIGITS: usize = 38;
/// A list's or map's overhead, whatever it holds.
const DOCUMENT_OVERHEAD: usize = 3;
/// The overhead of each element of a list or map.
const ELEMENT_OVERHEAD: usize = 1;

/// DynamoDB's size of an item: for each attribute, its name's UTF-8 bytes plus its value's
/// size by type (see the module's rules).
pub fn item_bytes(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_bytes(value))
        .sum()
}

/// The size of a value, without any name.
fn value_bytes(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_bytes(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| number_bytes(n)).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(list) => {
            DOCUMENT_OVERHEAD
                + list
                    .iter()
                    .map(|element| value_bytes(element) + ELEMENT_OVERHEAD)
                    .sum::<usize>()
        }
        AttributeValue::M(map) => {
            DOCUMENT_OVERHEAD
                + map
                    .iter()
                    .map(|(name, element)| name.len() + value_bytes(element) + ELEMENT_OVERHEAD)
                    .sum::<usize>()
        }
        other => panic!("an attribute value of a type this SDK does not know: {other:?}"),
    }
}

/// 1 byte per two significant digits, plus 1 byte. `n` is a number as DynamoDB's wire format
/// spells it (an optional sign, digits with an optional decimal point, an optional exponent).
fn number_bytes(n: &str) -> usize {
    let mantissa = n.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.min(MAX_SIGNIFICANT_DIGITS).div_ceil(2) + 1
}

/// What a global secondary index copies from the table besides the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// Every attribute of the item.
    All,
    /// The table's and the index's keys only.
    KeysOnly,
    /// The keys and these attributes (those the item has).
    Include(Vec<String>),
}

/// A global secondary index: its name, key attributes and projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexShape {
    pub name: String,
    pub partition: String,
    pub sort: Option<String>,
    pub projection: Projection,
}

impl IndexShape {
    /// The index's entry for `item`: the table's keys ([`TABLE_PARTITION_KEY`],
    /// [`TABLE_SORT_KEY`]), the index's keys and the projected attributes. `None` when the
    /// item lacks an index key attribute: such an item is not in the index (a sparse index).
    pub fn entry(&self, item: &Item) -> Option<Item> {
        let mut keys = vec![self.partition.as_str()];
        keys.extend(self.sort.as_deref());
        if keys.iter().any(|key| !item.contains_key(*key)) {
            return None;
        }
        keys.extend([TABLE_PARTITION_KEY, TABLE_SORT_KEY]);
        let projected = |name: &str| match &self.projection {
            Projection::All => true,
            Projection::KeysOnly => keys.contains(&name),
            Projection::Include(attributes) => {
                keys.contains(&name) || attributes.iter().any(|a| a == name)
            }
        };
        Some(
            item.iter()
                .filter(|(name, _)| projected(name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        )
    }

    /// Every global secondary index of the template's table. Panics on a shape this module
    /// cannot meter: a table whose keys are not `PK` and `SK`, an index without a partition
    /// key, or an unknown projection type.
    pub fn of_table(table: &local::template::TableDefinition) -> Vec<IndexShape> {
        let key = |schema: &[local::template::KeyElement], kind: &str| {
            schema
                .iter()
                .find(|k| k.key_type == kind)
                .map(|k| k.attribute_name.clone())
        };
        assert_eq!(
            (
                key(&table.key_schema, "HASH"),
                key(&table.key_schema, "RANGE")
            ),
            (
                Some(TABLE_PARTITION_KEY.to_owned()),
                Some(TABLE_SORT_KEY.to_owned())
            ),
            "the table's keys are {TABLE_PARTITION_KEY} and {TABLE_SORT_KEY}"
        );
        table
            .global_secondary_indexes
            .iter()
            .map(|index| IndexShape {
                name: index.index_name.clone(),
                partition: key(&index.key_schema, "HASH").unwrap_or_else(|| {
                    panic!("index {} has no partition (HASH) key", index.index_name)
                }),
                sort: key(&index.key_schema, "RANGE"),
                projection: match index.projection.projection_type.as_str() {
                    "ALL" => Projection::All,
                    "KEYS_ONLY" => Projection::KeysOnly,
                    "INCLUDE" => Projection::Include(index.projection.non_key_attributes.clone()),
                    other => panic!(
                        "index {} has an unknown projection type {other}",
                        index.index_name
                    ),
                },
            })
            .collect()
    }

    /// The index's key values in an entry.
    fn key_of<'a>(
        &self,
        entry: &'a Item,
    ) -> (Option<&'a AttributeValue>, Option<&'a AttributeValue>) {
        (
            entry.get(&self.partition),
            self.sort.as_ref().and_then(|sort| entry.get(sort)),
        )
    }
}

/// The units one item's write costs, in whole write request units: the table's, and each
/// index's by name (every index given, 0 for those the write leaves alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteUnits {
    pub table: u64,
    pub indexes: BTreeMap<String, u64>,
}

impl WriteUnits {
    /// The table's and every index's units together: what the request is billed.
    pub fn total(&self) -> u64 {
        self.table + self.indexes.values().sum::<u64>()
    }
}

/// Write request units for writing `bytes`: 1 per KB, rounded up, and at least 1.
fn units_of_write(bytes: usize) -> u64 {
    bytes.div_ceil(WRITE_UNIT_BYTES).max(1) as u64
}

/// The units one item's write costs, given the item before the write (`None`: there was
/// none) and after it (`None`: there is none).
///
/// - Put, update: `old` and `new` as they were and are; delete: `old`, `None`.
/// - A write that changed nothing (a failed condition, a delete of a missing item, a
///   `ConditionCheck` in a transaction): `old` and `new` equal. The table still pays for the
///   attempt (the item's size, or 1 unit when it does not exist); the indexes pay nothing.
/// - `transactional` (an item of `TransactWriteItems`): the table's units are doubled; the
///   indexes' are not (see the module's notes).
pub fn write_units(
    old: Option<&Item>,
    new: Option<&Item>,
    indexes: &[IndexShape],
    transactional: bool,
) -> WriteUnits {
    let size = |item: Option<&Item>| item.map_or(0, item_bytes);
    let table = units_of_write(size(old).max(size(new))) * if transactional { 2 } else { 1 };
    let indexes = indexes
        .iter()
        .map(|index| {
            let before = old.and_then(|item| index.entry(item));
            let after = new.and_then(|item| index.entry(item));
            (index.name.clone(), index_write_units(index, before, after))
        })
        .collect();
    WriteUnits { table, indexes }
}

/// What an index pays to go from entry `before` to entry `after`.
fn index_write_units(index: &IndexShape, before: Option<Item>, after: Option<Item>) -> u64 {
    match (before, after) {
        (None, None) => 0,
        (None, Some(added)) => units_of_write(item_bytes(&added)),
        (Some(removed), None) => units_of_write(item_bytes(&removed)),
        (Some(before), Some(after)) if before == after => 0,
        (Some(before), Some(after)) if index.key_of(&before) != index.key_of(&after) => {
            units_of_write(item_bytes(&before)) + units_of_write(item_bytes(&after))
        }
        (Some(before), Some(after)) => units_of_write(item_bytes(&before).max(item_bytes(&after))),
    }
}

/// Read request units for reading `bytes` in one operation: one `GetItem`'s item, each
/// `BatchGetItem` item separately, or the summed sizes of the items a `Query` evaluated
/// (index entries' sizes for a query of an index). 1 unit per 4 KB, rounded up, at least 1
/// (a read that finds nothing costs the minimum); half for an eventually consistent read,
/// twice for a transactional one (whatever `consistent` says).
pub fn read_units(bytes: usize, consistent: bool, transactional: bool) -> f64 {
    let units = bytes.div_ceil(READ_UNIT_BYTES).max(1) as f64;
    if transactional {
        units * 2.0
    } else if consistent {
        units
    } else {
        units / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;

    fn s(value: &str) -> AttributeValue {
        AttributeValue::S(value.to_owned())
    }

    fn n(value: &str) -> AttributeValue {
        AttributeValue::N(value.to_owned())
    }

    fn item(attributes: &[(&str, AttributeValue)]) -> Item {
        attributes
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    }

    fn one(name: &str, value: AttributeValue) -> usize {
        item_bytes(&item(&[(name, value)]))
    }

    #[test]
    fn a_string_is_its_name_and_its_utf8_bytes() {
        assert_eq!(one("name", s("Alice")), 4 + 5);
        // "é" is two bytes in UTF-8, in names and in values alike.
        assert_eq!(one("café", s("café")), 5 + 5);
        assert_eq!(one("empty", s("")), 5);
    }

    #[test]
    fn a_number_is_a_byte_per_two_significant_digits_and_one() {
        // 12345: five significant digits, 3 bytes, and 1.
        assert_eq!(one("price", n("123.45")), 5 + 4);
        assert_eq!(one("n", n("12")), 1 + 2);
        assert_eq!(one("n", n("7")), 1 + 2);
        // Leading and trailing zeroes are trimmed: 1000 and -0.00100 are one digit.
        assert_eq!(one("n", n("1000")), 1 + 2);
        assert_eq!(one("n", n("-0.00100")), 1 + 2);
        assert_eq!(one("n", n("0")), 1 + 1);
        // The exponent is not a digit.
        assert_eq!(one("n", n("1.5E+10")), 1 + 2);
        // Epoch milliseconds: 13 digits, 7 bytes, and 1.
        assert_eq!(one("ts", n("1718000000123")), 2 + 8);
        // At most 38 significant digits: 19 bytes, and 1.
        assert_eq!(one("n", n(&"9".repeat(38))), 1 + 20);
    }

    #[test]
    fn binary_boolean_and_null() {
        assert_eq!(one("b", AttributeValue::B(Blob::new(vec![0, 1, 2]))), 1 + 3);
        assert_eq!(one("ok", AttributeValue::Bool(true)), 2 + 1);
        assert_eq!(one("none", AttributeValue::Null(true)), 4 + 1);
    }

    #[test]
    fn sets_are_their_elements() {
        let ss = AttributeValue::Ss(vec!["ab".into(), "c".into()]);
        assert_eq!(one("ss", ss), 2 + 2 + 1);
        let ns = AttributeValue::Ns(vec!["1".into(), "123".into()]);
        assert_eq!(one("ns", ns), 2 + 2 + 3);
        let bs = AttributeValue::Bs(vec![Blob::new(vec![1; 4]), Blob::new(vec![2; 2])]);
        assert_eq!(one("bs", bs), 2 + 4 + 2);
    }

    #[test]
    fn lists_and_maps_are_three_bytes_and_a_byte_an_element() {
        assert_eq!(one("e", AttributeValue::L(vec![])), 1 + 3);
        assert_eq!(one("e", AttributeValue::M(HashMap::new())), 1 + 3);
        // "tags": 4; the list: 3; "a": 1 + 1; 12: 2 + 1.
        let list = AttributeValue::L(vec![s("a"), n("12")]);
        assert_eq!(one("tags", list), 4 + 3 + 2 + 3);
        // "m": 1; the map: 3; "k" = "vv": 1 + 2 + 1; "inner" = {}: 5 + 3 + 1.
        let map = AttributeValue::M(item(&[
            ("k", s("vv")),
            ("inner", AttributeValue::M(HashMap::new())),
        ]));
        assert_eq!(one("m", map), 1 + 3 + 4 + 9);
        // "doc" = {"list": [true, null, {"x": 1.5}]}: "doc": 3; the map: 3; its element "list":
        // 4, the list 3, true 1 + 1, null 1 + 1, {"x": 1.5} (3, "x" 1, 1.5 2, 1) + 1, and 1.
        let nested = AttributeValue::M(item(&[(
            "list",
            AttributeValue::L(vec![
                AttributeValue::Bool(true),
                AttributeValue::Null(true),
                AttributeValue::M(item(&[("x", n("1.5"))])),
            ]),
        )]));
        assert_eq!(
            one("doc", nested),
            3 + 3 + (4 + 3 + 2 + 2 + (3 + 1 + 2 + 1 + 1) + 1)
        );
    }

    #[test]
    fn an_item_sums_its_attributes() {
        let conversation = item(&[
            ("PK", s("USER#u1")),
            ("SK", s("CONV#c1")),
            ("count", n("42")),
        ]);
        assert_eq!(item_bytes(&conversation), (2 + 7) + (2 + 7) + (5 + 2));
    }

    /// An item of exactly `bytes` bytes: its keys and a padding string.
    fn sized(bytes: usize) -> Item {
        let mut item = item(&[("PK", s("p")), ("SK", s("s"))]);
        let padding = bytes - item_bytes(&item) - 1;
        item.insert("d".into(), s(&"x".repeat(padding)));
        assert_eq!(item_bytes(&item), bytes);
        item
    }

    #[test]
    fn writes_round_up_to_whole_kilobytes() {
        let units = |bytes| write_units(None, Some(&sized(bytes)), &[], false).table;
        assert_eq!(units(100), 1);
        assert_eq!(units(1024), 1);
        assert_eq!(units(1025), 2);
        assert_eq!(units(2048), 2);
        assert_eq!(units(2049), 3);
    }

    #[test]
    fn updates_and_replacements_pay_for_the_larger_image() {
        let (small, large) = (sized(500), sized(1500));
        assert_eq!(write_units(Some(&large), Some(&small), &[], false).table, 2);
        assert_eq!(write_units(Some(&small), Some(&large), &[], false).table, 2);
        // A delete pays for the item it deletes.
        assert_eq!(write_units(Some(&large), None, &[], false).table, 2);
    }

    #[test]
    fn writes_that_change_nothing_still_cost_the_table() {
        let by_x = IndexShape {
            name: "ByX".into(),
            partition: "x".into(),
            sort: None,
            projection: Projection::All,
        };
        // A delete of a missing item, or a failed condition where there is no item: 1 unit.
        let missing = write_units(None, None, std::slice::from_ref(&by_x), false);
        assert_eq!(missing.table, 1);
        assert_eq!(missing.indexes["ByX"], 0);
        // A failed condition on an existing 2 KB item: its size; the index: nothing.
        let mut existing = sized(2000);
        existing.insert("x".into(), s("1"));
        let failed = write_units(Some(&existing), Some(&existing), &[by_x], false);
        assert_eq!(failed.table, 2);
        assert_eq!(failed.indexes["ByX"], 0);
        assert_eq!(failed.total(), 2);
    }

    #[test]
    fn reads_round_up_to_four_kilobytes() {
        assert_eq!(read_units(1, true, false), 1.0);
        assert_eq!(read_units(4096, true, false), 1.0);
        assert_eq!(read_units(4097, true, false), 2.0);
        assert_eq!(read_units(4096, false, false), 0.5);
        assert_eq!(read_units(4097, false, false), 1.0);
        assert_eq!(read_units(8192, false, false), 1.0);
        assert_eq!(read_units(8193, false, false), 1.5);
        // Nothing found: still the minimum.
        assert_eq!(read_units(0, true, false), 1.0);
        assert_eq!(read_units(0, false, false), 0.5);
        // Transactional: twice a strongly consistent read.
        assert_eq!(read_units(4096, false, true), 2.0);
        assert_eq!(read_units(4097, true, true), 4.0);
        // The guide's query example: 40.8 KB evaluated rounds to 44 KB, 11 units.
        assert_eq!(read_units(41_780, true, false), 11.0);
    }

    fn by_activity(projection: Projection) -> IndexShape {
        IndexShape {
            name: "ByActivity".into(),
            partition: "owner".into(),
            sort: Some("lastActivity".into()),
            projection,
        }
    }

    fn conversation(last_activity: &str, title: &str) -> Item {
        item(&[
            ("PK", s("USER#u1#CONV#c1")),
            ("SK", s("META")),
            ("owner", s("u1")),
            ("lastActivity", n(last_activity)),
            ("title", s(title)),
            ("body", s("some text")),
        ])
    }

    #[test]
    fn entries_hold_the_keys_and_the_projection() {
        let item = conversation("1", "Hello");
        let keys_only = by_activity(Projection::KeysOnly).entry(&item).unwrap();
        let mut names: Vec<_> = keys_only.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["PK", "SK", "lastActivity", "owner"]);
        assert_eq!(
            item_bytes(&keys_only),
            (2 + 15) + (2 + 4) + (5 + 2) + (12 + 2)
        );

        let all = by_activity(Projection::All).entry(&item).unwrap();
        assert_eq!(all, item);
        assert!(item_bytes(&all) > item_bytes(&keys_only));

        let include =
            by_activity(Projection::Include(vec!["title".into(), "absent".into()])).entry(&item);
        let mut names: Vec<_> = include
            .as_ref()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["PK", "SK", "lastActivity", "owner", "title"]);
    }

    #[test]
    fn an_item_without_the_index_keys_is_not_in_the_index() {
        let mut item = conversation("1", "Hello");
        item.remove("lastActivity");
        assert_eq!(by_activity(Projection::All).entry(&item), None);
        let write = write_units(None, Some(&item), &[by_activity(Projection::All)], false);
        assert_eq!(write.table, 1);
        assert_eq!(write.indexes["ByActivity"], 0);
    }

    #[test]
    fn adding_and_removing_an_entry_is_one_write_of_its_size() {
        let index = [by_activity(Projection::All)];
        let item = conversation("1", "Hello");
        assert_eq!(
            write_units(None, Some(&item), &index, false).indexes["ByActivity"],
            1
        );
        assert_eq!(
            write_units(Some(&item), None, &index, false).indexes["ByActivity"],
            1
        );
        // An update that removes an index key attribute removes the entry.
        let mut unindexed = item.clone();
        unindexed.remove("owner");
        let write = write_units(Some(&item), Some(&unindexed), &index, false);
        assert_eq!(write.indexes["ByActivity"], 1);
        // A large entry takes more units.
        let mut large = item.clone();
        large.insert("body".into(), s(&"x".repeat(3000)));
        assert_eq!(
            write_units(None, Some(&large), &index, false).indexes["ByActivity"],
            3
        );
        let keys_only = [by_activity(Projection::KeysOnly)];
        assert_eq!(
            write_units(None, Some(&large), &keys_only, false).indexes["ByActivity"],
            1
        );
    }

    #[test]
    fn moving_an_index_key_deletes_and_puts_the_entry() {
        let index = [by_activity(Projection::KeysOnly)];
        let before = conversation("1", "Hello");
        let after = conversation("2", "Hello");
        let write = write_units(Some(&before), Some(&after), &index, false);
        assert_eq!(write.table, 1);
        assert_eq!(write.indexes["ByActivity"], 2);
        assert_eq!(write.total(), 3);
    }

    #[test]
    fn changing_only_projected_attributes_is_one_write() {
        let index = [by_activity(Projection::Include(vec!["title".into()]))];
        let before = conversation("1", "Hello");
        let after = conversation("1", "Renamed");
        let write = write_units(Some(&before), Some(&after), &index, false);
        assert_eq!(write.indexes["ByActivity"], 1);
    }

    #[test]
    fn changing_only_attributes_the_index_does_not_hold_writes_nothing_to_it() {
        let indexes = [
            by_activity(Projection::Include(vec!["title".into()])),
            IndexShape {
                name: "ByOwner".into(),
                partition: "owner".into(),
                sort: None,
                projection: Projection::KeysOnly,
            },
            IndexShape {
                name: "Everything".into(),
                partition: "owner".into(),
                sort: None,
                projection: Projection::All,
            },
        ];
        let before = conversation("1", "Hello");
        let mut after = before.clone();
        after.insert("body".into(), s("other text"));
        let write = write_units(Some(&before), Some(&after), &indexes, false);
        assert_eq!(write.table, 1);
        assert_eq!(write.indexes["ByActivity"], 0);
        assert_eq!(write.indexes["ByOwner"], 0);
        // An ALL projection holds every attribute, so it is written.
        assert_eq!(write.indexes["Everything"], 1);
    }

    #[test]
    fn transactions_double_the_table_and_not_the_indexes() {
        let index = [by_activity(Projection::All)];
        let item = conversation("1", "Hello");
        let write = write_units(None, Some(&item), &index, true);
        assert_eq!(write.table, 2);
        assert_eq!(write.indexes["ByActivity"], 1);
        // A 1.5 KB item: 2 units, doubled.
        assert_eq!(write_units(None, Some(&sized(1500)), &[], true).table, 4);
        // A ConditionCheck: the item unchanged, doubled; a missing item: 1, doubled.
        let check = write_units(Some(&item), Some(&item), &index, true);
        assert_eq!((check.table, check.indexes["ByActivity"]), (2, 0));
        assert_eq!(write_units(None, None, &index, true).table, 2);
    }

    #[test]
    fn indexes_of_a_table_definition() {
        let table: local::template::TableDefinition = serde_norway::from_str(
            r#"
            AttributeDefinitions: []
            KeySchema:
              - { AttributeName: PK, KeyType: HASH }
              - { AttributeName: SK, KeyType: RANGE }
            GlobalSecondaryIndexes:
              - IndexName: ByActivity
                KeySchema:
                  - { AttributeName: owner, KeyType: HASH }
                  - { AttributeName: lastActivity, KeyType: RANGE }
                Projection: { ProjectionType: ALL }
              - IndexName: ByCreated
                KeySchema:
                  - { AttributeName: owner, KeyType: HASH }
                  - { AttributeName: createdAt, KeyType: RANGE }
                Projection:
                  ProjectionType: INCLUDE
                  NonKeyAttributes: [titleLower]
              - IndexName: ByShard
                KeySchema:
                  - { AttributeName: shard, KeyType: HASH }
                Projection: { ProjectionType: KEYS_ONLY }
            "#,
        )
        .expect("a table definition");
        assert_eq!(
            IndexShape::of_table(&table),
            [
                by_activity(Projection::All),
                IndexShape {
                    name: "ByCreated".into(),
                    partition: "owner".into(),
                    sort: Some("createdAt".into()),
                    projection: Projection::Include(vec!["titleLower".into()]),
                },
                IndexShape {
                    name: "ByShard".into(),
                    partition: "shard".into(),
                    sort: None,
                    projection: Projection::KeysOnly,
                },
            ]
        );
    }

    #[test]
    fn the_template_table_has_metered_indexes() {
        let table = crate::template().table().expect("the table's definition");
        let indexes = IndexShape::of_table(&table);
        assert_eq!(indexes.len(), table.global_secondary_indexes.len());
    }
}
