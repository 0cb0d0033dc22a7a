//! Records of pods and containers. The store keeps them as opaque JSON
//! documents (the runtime owns their shape) with the columns the store itself
//! needs: identity, the name that must be unique, and the resources (image
//! snapshots) the object keeps alive against gc.

use berth_api::Namespace;
use rusqlite::{OptionalExtension, params};

use crate::meta::Resource;
use crate::{Store, StoreError, now_nanos};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS objects(
    kind      TEXT NOT NULL,
    id        TEXT NOT NULL,
    namespace TEXT NOT NULL,
    -- The pod of a container; '' for a pod.
    parent    TEXT NOT NULL,
    name      TEXT NOT NULL,
    created   INTEGER NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY(kind, id),
    UNIQUE(kind, namespace, parent, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS object_resources(
    kind     TEXT NOT NULL,
    id       TEXT NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY(kind, id, resource),
    FOREIGN KEY(kind, id) REFERENCES objects(kind, id) ON DELETE CASCADE
) WITHOUT ROWID;
"#;

/// The kinds of object the runtime records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Pod,
    Container,
}

impl ObjectKind {
    fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Pod => "pod",
            ObjectKind::Container => "container",
        }
    }
}

/// One stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRow {
    pub id: String,
    pub namespace: Namespace,
    /// The owning pod's id for a container; empty for a pod.
    pub parent: String,
    pub name: String,
    /// Unix time in nanoseconds.
    pub created: i64,
    /// The runtime's JSON document.
    pub data: String,
}

type Row = (String, String, String, String, i64, String);

fn from_row(kind: ObjectKind, r: Row) -> Result<ObjectRow, StoreError> {
    let (id, namespace, parent, name, created, data) = r;
    let namespace = namespace
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("{} {id}: namespace: {e}", kind.as_str())))?;
    Ok(ObjectRow {
        id,
        namespace,
        parent,
        name,
        created,
        data,
    })
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

const COLS: &str = "id, namespace, parent, name, created, data";

impl Store {
    /// Records a new object and the resources it keeps alive, in one
    /// transaction. A name already taken in the same namespace (and pod) is
    /// refused with [`StoreError::NameInUse`] naming the holder.
    pub fn insert_object(
        &self,
        kind: ObjectKind,
        row: &ObjectRow,
        resources: &[Resource],
    ) -> Result<(), StoreError> {
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::db(format!("record {} {}", kind.as_str(), row.id)))?;
        let holder: Option<String> = tx
            .prepare_cached(
                "SELECT id FROM objects WHERE kind = ?1 AND namespace = ?2 AND parent = ?3 AND name = ?4",
            )
            .and_then(|mut st| {
                st.query_row(
                    params![kind.as_str(), row.namespace.as_str(), row.parent, row.name],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(StoreError::db("look up name"))?;
        if let Some(holder) = holder {
            return Err(StoreError::NameInUse {
                kind: kind.as_str(),
                name: row.name.clone(),
                namespace: row.namespace.to_string(),
                holder,
            });
        }
        let created = if row.created == 0 {
            now_nanos()
        } else {
            row.created
        };
        tx.prepare_cached(
            "INSERT INTO objects(kind, id, namespace, parent, name, created, data) VALUES (?1,?2,?3,?4,?5,?6,?7)",
        )
        .and_then(|mut st| {
            st.execute(params![
                kind.as_str(),
                row.id,
                row.namespace.as_str(),
                row.parent,
                row.name,
                created,
                row.data
            ])
        })
        .map_err(StoreError::db(format!("record {} {}", kind.as_str(), row.id)))?;
        for res in resources {
            tx.execute(
                "INSERT INTO object_resources(kind, id, resource) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![kind.as_str(), row.id, res.encode()],
            )
            .map_err(StoreError::db(format!(
                "record resources of {} {}",
                kind.as_str(),
                row.id
            )))?;
        }
        tx.commit()
            .map_err(StoreError::db(format!("record {} {}", kind.as_str(), row.id)))
    }

    /// Replaces an object's document.
    pub fn update_object(&self, kind: ObjectKind, id: &str, data: &str) -> Result<(), StoreError> {
        let conn = self.db.lock();
        let n = conn
            .prepare_cached("UPDATE objects SET data = ?3 WHERE kind = ?1 AND id = ?2")
            .and_then(|mut st| st.execute(params![kind.as_str(), id, data]))
            .map_err(StoreError::db(format!("update {} {id}", kind.as_str())))?;
        if n == 0 {
            return Err(StoreError::ObjectNotFound {
                kind: kind.as_str(),
                id: id.to_string(),
            });
        }
        Ok(())
    }

    pub fn get_object(&self, kind: ObjectKind, id: &str) -> Result<Option<ObjectRow>, StoreError> {
        let conn = self.db.lock();
        let row = conn
            .prepare_cached(&format!("SELECT {COLS} FROM objects WHERE kind = ?1 AND id = ?2"))
            .and_then(|mut st| st.query_row(params![kind.as_str(), id], read_row).optional())
            .map_err(StoreError::db(format!("read {} {id}", kind.as_str())))?;
        row.map(|r| from_row(kind, r)).transpose()
    }

    /// Objects of `kind`, in `ns` (every namespace when `None`), of one
    /// parent when given, oldest first.
    pub fn list_objects(
        &self,
        kind: ObjectKind,
        ns: Option<&Namespace>,
        parent: Option<&str>,
    ) -> Result<Vec<ObjectRow>, StoreError> {
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM objects WHERE kind = ?1 AND (?2 IS NULL OR namespace = ?2)
                 AND (?3 IS NULL OR parent = ?3) ORDER BY created, id"
            ))
            .map_err(StoreError::db(format!("list {}s", kind.as_str())))?;
        let rows = stmt
            .query_map(params![kind.as_str(), ns.map(|n| n.as_str()), parent], read_row)
            .map_err(StoreError::db(format!("list {}s", kind.as_str())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::db(format!("list {}s", kind.as_str())))?;
        rows.into_iter().map(|r| from_row(kind, r)).collect()
    }

    /// Removes an object; what it kept alive is left to gc. Missing is fine.
    pub fn delete_object(&self, kind: ObjectKind, id: &str) -> Result<(), StoreError> {
        let conn = self.db.lock();
        conn.prepare_cached("DELETE FROM objects WHERE kind = ?1 AND id = ?2")
            .and_then(|mut st| st.execute(params![kind.as_str(), id]))
            .map_err(StoreError::db(format!("delete {} {id}", kind.as_str())))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, parent: &str, name: &str) -> ObjectRow {
        ObjectRow {
            id: id.into(),
            namespace: "default".parse().unwrap(),
            parent: parent.into(),
            name: name.into(),
            created: 0,
            data: format!("{{\"id\":\"{id}\"}}"),
        }
    }

    #[test]
    fn names_are_unique_per_namespace_and_pod() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.insert_object(ObjectKind::Pod, &row("p1", "", "web"), &[])
            .unwrap();
        let err = s
            .insert_object(ObjectKind::Pod, &row("p2", "", "web"), &[])
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NameInUse { holder, .. } if holder == "p1"),
            "{err}"
        );
        assert!(err.to_string().contains("\"web\""), "{err}");
        // The refused insert left the first record as it was.
        assert_eq!(
            s.get_object(ObjectKind::Pod, "p1").unwrap().unwrap().data,
            "{\"id\":\"p1\"}"
        );
        // Same container name in two pods is fine.
        s.insert_object(ObjectKind::Container, &row("c1", "p1", "app"), &[])
            .unwrap();
        s.insert_object(ObjectKind::Container, &row("c2", "p2", "app"), &[])
            .unwrap();
        let in_p1 = s.list_objects(ObjectKind::Container, None, Some("p1")).unwrap();
        assert_eq!(in_p1.len(), 1);
        assert_eq!(in_p1[0].id, "c1");
        s.update_object(ObjectKind::Container, "c1", "{}").unwrap();
        assert_eq!(
            s.get_object(ObjectKind::Container, "c1").unwrap().unwrap().data,
            "{}"
        );
        assert!(s.update_object(ObjectKind::Container, "nope", "{}").is_err());
        s.delete_object(ObjectKind::Container, "c1").unwrap();
        s.delete_object(ObjectKind::Container, "c1").unwrap();
        assert!(s.get_object(ObjectKind::Container, "c1").unwrap().is_none());
    }

    #[test]
    fn object_resources_are_gc_roots_until_the_object_goes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.content().write_all(b"layer", None).unwrap();
        s.insert_object(
            ObjectKind::Container,
            &row("c1", "p1", "app"),
            &[Resource::Blob(d.clone())],
        )
        .unwrap();
        assert_eq!(s.gc().unwrap().blobs_removed, 0);
        assert!(s.content().exists(&d));
        s.delete_object(ObjectKind::Container, "c1").unwrap();
        assert_eq!(s.gc().unwrap().blobs_removed, 1);
        assert!(!s.content().exists(&d));
    }
}
