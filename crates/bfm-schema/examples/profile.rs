//! Times the phases of a database-vs-database plan (developer aid).
//! Usage: cargo run --release -p bfm-schema --example profile -- FROM_URL TO_URL
use std::time::Instant;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: profile FROM_URL TO_URL");
        return;
    }
    if std::env::var_os("PROFILE_DIFF").is_some() {
        let t = |u: &str| bfm_schema::SchemaTarget { database_url: u.to_string(), managed_schemas: vec![], default_schema: None };
        let (Ok(a), Ok(b)) = (
            bfm_schema::introspect_model(&t(&args[1]), &bfm_schema::Scope::whole_database()).await,
            bfm_schema::introspect_model(&t(&args[2]), &bfm_schema::Scope::whole_database()).await,
        ) else {
            return;
        };
        let t0 = Instant::now();
        for _ in 0..20 {
            std::hint::black_box(a.fingerprint());
        }
        println!("fingerprint x20 {:?}", t0.elapsed());
        let t0 = Instant::now();
        for _ in 0..20 {
            std::hint::black_box(a.to_compressed().map(|v| v.len()).unwrap_or(0));
        }
        println!("compress x20 {:?}, {} bytes", t0.elapsed(), a.to_compressed().map(|v| v.len()).unwrap_or(0));
        let t0 = Instant::now();
        for _ in 0..50 {
            std::hint::black_box(bfm_schema::diff_models(&a, &b));
        }
        println!("diff x50 {:?}", t0.elapsed());
        return;
    }
    for _ in 0..3 {
        let t = Instant::now();
        let a = bfm_schema::introspect_model(
            &bfm_schema::SchemaTarget { database_url: args[1].clone(), managed_schemas: vec![], default_schema: None },
            &bfm_schema::Scope::whole_database(),
        )
        .await;
        let t_a = t.elapsed();
        let b = bfm_schema::introspect_model(
            &bfm_schema::SchemaTarget { database_url: args[2].clone(), managed_schemas: vec![], default_schema: None },
            &bfm_schema::Scope::whole_database(),
        )
        .await;
        let (Ok(a), Ok(b)) = (a, b) else {
            eprintln!("introspection failed");
            return;
        };
        let t = Instant::now();
        let fa = a.fingerprint();
        let fb = b.fingerprint();
        let t_fp = t.elapsed();
        let t = Instant::now();
        let plan = bfm_schema::diff_models(&a, &b);
        let t_diff = t.elapsed();
        println!(
            "introspect one side {:?}, two fingerprints {:?}, diff {:?} ({} steps) {} {}",
            t_a,
            t_fp,
            t_diff,
            plan.len(),
            &fa[..10],
            &fb[..10]
        );
    }
}
