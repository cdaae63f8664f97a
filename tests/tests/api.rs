//! Black-box tests of the REST surface, each on SQLite and on PostgreSQL.

mod api {
    pub mod auth;
    pub mod cash;
    pub mod feed;
    pub mod inventory;
    pub mod limits;
    pub mod metrics;
    pub mod orders;
    pub mod overflow;
    pub mod retention;
    pub mod validation;
}
