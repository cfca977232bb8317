//! The model's tool rounds of a turn, so a turn resumed after a crash continues its tool loop
//! where it stopped instead of asking the model again for rounds whose messages were already
//! stored (and maybe sent).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Turn {
    Table,
    ToolRounds,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // JSON text: the rounds are read and written whole, never queried.
        m.alter_table(
            Table::alter()
                .table(Turn::Table)
                .add_column(ColumnDef::new(Turn::ToolRounds).text().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Turn::Table)
                .drop_column(Turn::ToolRounds)
                .to_owned(),
        )
        .await
    }
}
