//! sea-orm entities, one file per table. Tables are singular, keys are `<table>_id` in foreign
//! columns, times are `*_at` milliseconds since the epoch.

pub mod api_token;
pub mod login_throttle;
pub mod tenant;
pub mod user;
