//! OpenAPI schemas for the request bodies that `herald_core` parses field by field
//! from raw JSON (events, alerts, receipts) rather than through a derived struct: the
//! parsing reports every problem against its field and never lets one bad item reject
//! its neighbours, which serde's derive cannot do. The types the handlers extract
//! implement `ToSchema` by hand with these helpers, so the document names the type
//! the handler really takes. Every other body and answer derives its schema.

use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

/// The JSON type of a documented field.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    String,
    Uuid,
    Number,
    Object,
}

/// One documented field: name, type, whether it is required, description.
pub type Field = (&'static str, Kind, bool, &'static str);

/// An object with `fields`.
pub fn object(description: &str, fields: &[Field]) -> RefOr<Schema> {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description));
    for &(name, kind, required, about) in fields {
        object = object.property(name, property(kind, about));
        if required {
            object = object.required(name);
        }
    }
    object.into()
}

/// A batch: an array of up to `max_items` items.
pub fn batch(description: &str, item: RefOr<Schema>, max_items: usize) -> RefOr<Schema> {
    ArrayBuilder::new()
        .description(Some(description))
        .items(item)
        .max_items(Some(max_items))
        .into()
}

fn property(kind: Kind, about: &str) -> ObjectBuilder {
    let about = (!about.is_empty()).then_some(about);
    let builder = ObjectBuilder::new().description(about);
    match kind {
        Kind::String => builder.schema_type(Type::String),
        Kind::Uuid => builder
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        Kind::Number => builder.schema_type(Type::Number),
        Kind::Object => builder.schema_type(Type::Object),
    }
}
