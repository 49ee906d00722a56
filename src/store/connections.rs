//! Storage connection rows. Reads, lists and updates go through the generic record functions
//! of [`Table::Connections`](super::Table::Connections).

use serde_json::Value;
use sqlx::types::Json;

use sqlx::AssertSqlSafe;

use super::{Db, Store, StoreResult, Table};

impl Store {
    /// Saves an archived connection's record and frees its name.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn archive_connection(&self, id: &str, doc: &Value) -> StoreResult<()> {
        let sql = "UPDATE connections SET doc = $1, name = NULL WHERE id = $2";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(Json(doc))
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The id and record of every row of `table`, of every organization, oldest first: for
    /// maintenance such as re-sealing secrets under a new master key.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn all_docs(&self, table: Table) -> StoreResult<Vec<(String, Value)>> {
        let sql = format!("SELECT id, doc FROM {} ORDER BY seq", table.name());
        let rows: Vec<(String, Json<Value>)> = with_pool!(self, pool =>
            sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|(id, Json(doc))| (id, doc)).collect())
    }
}
