#![allow(clippy::unwrap_used, clippy::expect_used)]
use parley::config::{DatabaseUrl, Settings};
use parley::store::Store;
use sea_orm::{ConnectionTrait, Statement, DatabaseBackend};
use std::time::Instant;

fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::defaults().unwrap();
        s.database = DatabaseUrl::Sqlite(dir.path().join("x.db"));
        let store = Store::connect(&s).await.unwrap();
        store.migrate().await.unwrap();
        let db = store.db();
        db.execute_unprepared("CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER)").await.unwrap();
        for i in 0..1000 { db.execute_raw(Statement::from_sql_and_values(DatabaseBackend::Sqlite, "INSERT INTO t VALUES (?, 0)", [format!("k{i}").into()])).await.unwrap(); }
        let n = 20000;
        let (c0, t0) = (cpu(), Instant::now());
        for i in 0..n { db.query_one_raw(Statement::from_sql_and_values(DatabaseBackend::Sqlite, "SELECT id, v FROM t WHERE id = ?", [format!("k{}", i % 1000).into()])).await.unwrap(); }
        println!("select by pk: {:.1} us cpu, {:.1} us wall", (cpu()-c0)*1e6/n as f64, t0.elapsed().as_secs_f64()*1e6/n as f64);
        let (c0, t0) = (cpu(), Instant::now());
        for i in 0..n { db.execute_raw(Statement::from_sql_and_values(DatabaseBackend::Sqlite, "UPDATE t SET v = v + 1 WHERE id = ?", [format!("k{}", i % 1000).into()])).await.unwrap(); }
        println!("update autocommit: {:.1} us cpu, {:.1} us wall", (cpu()-c0)*1e6/n as f64, t0.elapsed().as_secs_f64()*1e6/n as f64);
        let (c0, t0) = (cpu(), Instant::now());
        for i in 0..n/4 {
            let txn = parley::store::begin_write(db).await.unwrap();
            txn.execute_raw(Statement::from_sql_and_values(DatabaseBackend::Sqlite, "UPDATE t SET v = v + 1 WHERE id = ?", [format!("k{}", i % 1000).into()])).await.unwrap();
            txn.commit().await.unwrap();
        }
        println!("txn(begin+update+commit): {:.1} us cpu, {:.1} us wall", (cpu()-c0)*1e6/(n/4) as f64, t0.elapsed().as_secs_f64()*1e6/(n/4) as f64);
        // concurrency 16 selects
        let (c0, t0) = (cpu(), Instant::now());
        let mut hs = vec![];
        for w in 0..16 { let db = db.clone(); hs.push(tokio::spawn(async move { for i in 0..n/16 { db.query_one_raw(Statement::from_sql_and_values(DatabaseBackend::Sqlite, "SELECT id, v FROM t WHERE id = ?", [format!("k{}", (i*16+w) % 1000).into()])).await.unwrap(); } })); }
        for h in hs { h.await.unwrap(); }
        println!("select x16 concurrent: {:.1} us cpu, {:.1} us wall", (cpu()-c0)*1e6/n as f64, t0.elapsed().as_secs_f64()*1e6/n as f64);
        let (c0, t0) = (cpu(), Instant::now());
        let mut hs = vec![];
        for w in 0..16 { let db = db.clone(); hs.push(tokio::spawn(async move { for i in 0..n/16 { if i % 4 == 0 { parley::store::write_one(&db, Statement::from_sql_and_values(DatabaseBackend::Sqlite, "UPDATE t SET v = v + 1 WHERE id = ?", [format!("k{}", (i*16+w) % 1000).into()])).await.unwrap(); } else { db.query_one_raw(Statement::from_sql_and_values(DatabaseBackend::Sqlite, "SELECT id, v FROM t WHERE id = ?", [format!("k{}", (i*16+w) % 1000).into()])).await.unwrap(); } } })); }
        for h in hs { h.await.unwrap(); }
        println!("mixed 1/4 writes x16 concurrent: {:.1} us cpu, {:.1} us wall", (cpu()-c0)*1e6/n as f64, t0.elapsed().as_secs_f64()*1e6/n as f64);
    });
}
