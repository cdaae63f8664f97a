//! JSON Schemas (for the gateway's OpenAPI document) of the wire types whose
//! serde form is written by hand: money and quantities as decimal strings,
//! identifiers and barcodes as bounded strings. Each pattern says what the
//! type's own parser accepts, so a schema cannot promise more than `parse`.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::number::MAX_LEN;
use crate::order::{Barcode, Money, Quantity, Sku, StoreId, TerminalId};

fn string(pattern: &str, max: usize, description: &str, example: &str) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .min_length(Some(1))
            .max_length(Some(max))
            .description(Some(description))
            .examples([example])
            .build(),
    ))
}

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        string(
            r"^[0-9]+(\.[0-9]{1,2})?$",
            MAX_LEN,
            "An amount of CNY in yuan as a decimal string: no sign, at most two decimals, \
             at most 100 million. Answers always write two decimals.",
            "12.50",
        )
    }
}
impl ToSchema for Money {}

impl PartialSchema for Quantity {
    fn schema() -> RefOr<Schema> {
        string(
            r"^[0-9]+(\.[0-9]{1,3})?$",
            MAX_LEN,
            "A quantity in its product's unit as a decimal string: whole pieces (`2`), \
             or kilograms with at most three decimals (`0.355`).",
            "0.355",
        )
    }
}
impl ToSchema for Quantity {}

impl PartialSchema for Barcode {
    fn schema() -> RefOr<Schema> {
        string(
            r"^([0-9]{8}|[0-9]{13})$",
            13,
            "An EAN-8 or EAN-13 barcode with a correct check digit.",
            "4006381333931",
        )
    }
}
impl ToSchema for Barcode {}

macro_rules! ident_schema {
    ($name:ident, $what:literal, $example:literal) => {
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string(
                    r"^[A-Za-z0-9._-]{1,64}$",
                    64,
                    concat!(
                        $what,
                        ": 1-64 characters of A-Z, a-z, 0-9, '-', '_' or '.'."
                    ),
                    $example,
                )
            }
        }
        impl ToSchema for $name {}
    };
}

ident_schema!(Sku, "A stock-keeping unit", "COLA");
ident_schema!(StoreId, "A store of the chain", "S001");
ident_schema!(TerminalId, "A counter terminal", "S001-T01");
