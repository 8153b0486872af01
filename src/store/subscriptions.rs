//! Subscriptions to AF's events: which client follows which person in which case, for which
//! purpose, until when. The person is kept only as a pseudonym in the `subscriptions` domain;
//! the rows live in the same SQLite file as the audit chain, written durably before the case
//! system hears that a subscription exists.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::ident::{format_date, parse_date};
use crate::model::lexical::parse_tidpunkt;
use crate::model::{Prenumeration, PrenumerationStatus, Tidsperiod};
use crate::store::audit::format_time;
use crate::store::schema::{StoreError, create_schema, drop_for_subscription, err};

/// The most subscriptions `ListaPrenumerationer` answers with (the newest, oldest first).
pub const LIST_LIMIT: usize = 100;

/// A subscription that an event is to be delivered under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub id: String,
    pub client: String,
    pub arende: String,
    /// The pseudonym it was registered with.
    pub subject: String,
    /// The purpose it follows the person for.
    pub syfte: String,
}

/// The active subscriptions, of any client, to the person (`subjects`: their pseudonyms under
/// every key) whose period holds `day`, oldest first.
pub fn active_on(
    conn: &Connection,
    subjects: &[String],
    day: time::Date,
) -> Result<Vec<Subscriber>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, client, arende, subject, syfte FROM subscriptions
             WHERE subject = ?1 AND ended IS NULL AND from_date <= ?2 AND tom_date >= ?2
             ORDER BY registered, id",
        )
        .map_err(err)?;
    let day = format_date(day);
    let mut out = Vec::new();
    for subject in subjects {
        let rows = stmt
            .query_map(params![subject, day], |r| {
                Ok(Subscriber {
                    id: r.get(0)?,
                    client: r.get(1)?,
                    arende: r.get(2)?,
                    subject: r.get(3)?,
                    syfte: r.get(4)?,
                })
            })
            .map_err(err)?;
        for row in rows {
            out.push(row.map_err(err)?);
        }
    }
    Ok(out)
}

/// The subscriptions table of a store. Calls block on SQLite: run them off the async workers.
pub struct Subscriptions {
    conn: Mutex<Connection>,
}

/// A new or extended subscription, as `register` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub prenumeration: Prenumeration,
    /// An active subscription for the same case and person existed and was extended.
    pub extended: bool,
}

impl Subscriptions {
    /// Opens (creating if needed) the subscriptions table in the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = crate::store::audit::open(path).map_err(err)?;
        create_schema(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::new("a writer panicked"))
    }

    /// Starts a subscription, or extends the client's active one for the same case and
    /// person (`subjects`: the person's pseudonyms under every key, the first the newest) to
    /// cover `period` too; the purpose becomes the new one.
    pub fn register(
        &self,
        client: &str,
        arende: &str,
        syfte: &str,
        subjects: &[String],
        period: Tidsperiod,
        now: OffsetDateTime,
    ) -> Result<Registered, StoreError> {
        let subject = subjects
            .first()
            .ok_or_else(|| StoreError::new("no key for the domain 'subscriptions'"))?;
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let existing = find_active(&tx, client, arende, subjects)?;
        let (prenumeration, extended) = match existing {
            Some(mut p) => {
                let from = p.period.from().min(period.from());
                let tom = p.period.tom().max(period.tom());
                p.period = Tidsperiod::new(from, tom).unwrap_or(period);
                p.syfte = syfte.to_owned();
                tx.execute(
                    "UPDATE subscriptions SET syfte = ?2, from_date = ?3, tom_date = ?4, subject = ?5 WHERE id = ?1",
                    params![
                        p.id.to_string(),
                        syfte,
                        format_date(from),
                        format_date(tom),
                        subject
                    ],
                )
                .map_err(err)?;
                (p, true)
            }
            None => {
                let p = Prenumeration {
                    id: Uuid::new_v4(),
                    arendeidentitet: arende.to_owned(),
                    syfte: syfte.to_owned(),
                    period,
                    status: PrenumerationStatus::Aktiv,
                    registrerad: now,
                    avslutad: None,
                };
                tx.execute(
                    "INSERT INTO subscriptions (id, client, arende, syfte, subject, from_date, tom_date, registered)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        p.id.to_string(),
                        client,
                        arende,
                        syfte,
                        subject,
                        format_date(period.from()),
                        format_date(period.tom()),
                        format_time(now)
                    ],
                )
                .map_err(err)?;
                (p, false)
            }
        };
        tx.commit().map_err(err)?;
        Ok(Registered {
            prenumeration,
            extended,
        })
    }

    /// Ends the client's active subscription for the case and person; `None` when there is
    /// none.
    pub fn end(
        &self,
        client: &str,
        arende: &str,
        subjects: &[String],
        now: OffsetDateTime,
    ) -> Result<Option<Prenumeration>, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let Some(mut p) = find_active(&tx, client, arende, subjects)? else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE subscriptions SET ended = ?2 WHERE id = ?1",
            params![p.id.to_string(), format_time(now)],
        )
        .map_err(err)?;
        // Events not yet delivered under it are not delivered any more.
        drop_for_subscription(&tx, &p.id.to_string(), now)?;
        tx.commit().map_err(err)?;
        p.status = PrenumerationStatus::Avslutad;
        p.avslutad = Some(now);
        Ok(Some(p))
    }

    /// The client's subscriptions in a case, active and ended: the newest [`LIST_LIMIT`],
    /// oldest first.
    pub fn list(&self, client: &str, arende: &str) -> Result<Vec<Prenumeration>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE client = ?1 AND arende = ?2
                 ORDER BY registered DESC, id LIMIT {LIST_LIMIT}"
            ))
            .map_err(err)?;
        let mut out = stmt
            .query_map(params![client, arende], row)
            .map_err(err)?
            .collect::<Result<Result<Vec<_>, _>, _>>()
            .map_err(err)??;
        out.reverse();
        Ok(out)
    }
}

const COLUMNS: &str = "id, arende, syfte, from_date, tom_date, registered, ended";

fn find_active(
    conn: &Connection,
    client: &str,
    arende: &str,
    subjects: &[String],
) -> Result<Option<Prenumeration>, StoreError> {
    for subject in subjects {
        let found = conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM subscriptions
                     WHERE client = ?1 AND arende = ?2 AND subject = ?3 AND ended IS NULL"
                ),
                params![client, arende, subject],
                row,
            )
            .optional()
            .map_err(err)?
            .transpose()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// A row as a subscription; a row that does not parse is an error, never a guess.
fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Prenumeration, StoreError>> {
    let id: String = r.get(0)?;
    let arende: String = r.get(1)?;
    let syfte: String = r.get(2)?;
    let from: String = r.get(3)?;
    let tom: String = r.get(4)?;
    let registered: String = r.get(5)?;
    let ended: Option<String> = r.get(6)?;
    Ok((|| {
        let bad = |what: &str| StoreError::new(format!("subscription {id}: {what} cannot be read"));
        let period = Tidsperiod::new(
            parse_date(&from).map_err(|_| bad("from_date"))?,
            parse_date(&tom).map_err(|_| bad("tom_date"))?,
        )
        .ok_or_else(|| bad("the period"))?;
        let avslutad = ended
            .map(|t| parse_tidpunkt(&t).map_err(|_| bad("ended")))
            .transpose()?;
        Ok(Prenumeration {
            id: Uuid::parse_str(&id).map_err(|_| bad("id"))?,
            arendeidentitet: arende,
            syfte,
            period,
            status: if avslutad.is_some() {
                PrenumerationStatus::Avslutad
            } else {
                PrenumerationStatus::Aktiv
            },
            registrerad: parse_tidpunkt(&registered).map_err(|_| bad("registered"))?,
            avslutad,
        })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(from: &str, tom: &str) -> Tidsperiod {
        Tidsperiod::new(parse_date(from).unwrap(), parse_date(tom).unwrap()).unwrap()
    }

    #[test]
    fn register_extend_end_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = Subscriptions::open(&dir.path().join("store.db")).unwrap();
        let now = OffsetDateTime::now_utc();
        let anna = vec!["s1:anna".to_owned()];
        let first = s
            .register(
                "stockholm",
                "EB-1",
                "EKB-BESLUT",
                &anna,
                period("2026-12-01", "2027-02-28"),
                now,
            )
            .unwrap();
        assert!(!first.extended);
        // Again for the same case and person: the same subscription, covering both periods.
        let again = s
            .register(
                "stockholm",
                "EB-1",
                "AKT-UPPFOLJNING",
                &anna,
                period("2027-01-01", "2027-06-30"),
                now,
            )
            .unwrap();
        assert!(again.extended);
        assert_eq!(again.prenumeration.id, first.prenumeration.id);
        assert_eq!(
            again.prenumeration.period,
            period("2026-12-01", "2027-06-30")
        );
        // Another client, another case: others.
        let other = s
            .register(
                "goteborg",
                "EB-1",
                "EKB-BESLUT",
                &anna,
                period("2026-12-01", "2027-01-31"),
                now,
            )
            .unwrap();
        assert_ne!(other.prenumeration.id, first.prenumeration.id);
        // Found under an older key too (the newest key comes first).
        let rotated = vec!["s2:anna".to_owned(), "s1:anna".to_owned()];
        let ended = s.end("stockholm", "EB-1", &rotated, now).unwrap().unwrap();
        assert_eq!(ended.status, PrenumerationStatus::Avslutad);
        assert_eq!(s.end("stockholm", "EB-1", &rotated, now).unwrap(), None);
        let listed = s.list("stockholm", "EB-1").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, PrenumerationStatus::Avslutad);
        assert_eq!(listed[0].syfte, "AKT-UPPFOLJNING");
        assert!(s.list("stockholm", "EB-2").unwrap().is_empty());
    }
}
