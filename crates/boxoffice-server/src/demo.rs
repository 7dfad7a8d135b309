//! `--demo`: a demo organization, event and ticket types in an empty database, so a fresh
//! checkout is a working box office.

use std::time::Duration;

use boxoffice_core::BoxOffice;
use boxoffice_core::auth::Caller;
use boxoffice_core::catalog::{Capacity, EventWithTicketTypes, MaxPerOrder};
use boxoffice_core::money::{Cents, Currency};
use boxoffice_core::organizations::Name;
use boxoffice_core::service::{self, NewEvent, NewTicketType};

/// Seeds the demo data if the installation has no organization yet. Returns the event it
/// created, or `None` when the database was not empty.
pub async fn seed(boxoffice: &BoxOffice) -> Result<Option<EventWithTicketTypes>, service::Error> {
    if boxoffice.store().count_organizations().await? > 0 {
        return Ok(None);
    }
    let invalid = |what: &str| service::Error::Invalid(format!("demo data: bad {what}"));
    let operator = Caller::Operator;
    let (org, _project) = boxoffice
        .create_organization(&operator, Name::parse("Demo Productions").map_err(|_| invalid("name"))?)
        .await?;
    let mut event = boxoffice
        .create_event(
            &operator,
            NewEvent {
                organization_id: org.id,
                name: Name::parse("The Rust Orchestra — Live").map_err(|_| invalid("name"))?,
                starts_at: boxoffice.now().plus(Duration::from_secs(30 * 24 * 60 * 60)),
                currency: Currency::parse("EUR").map_err(|_| invalid("currency"))?,
                hold_seconds: None,
            },
        )
        .await?;
    for (name, price, capacity) in [
        ("General admission", 2_500, 500),
        ("Balcony", 4_000, 120),
        ("VIP", 9_000, 40),
    ] {
        let ticket_type = boxoffice
            .create_ticket_type(
                &operator,
                &event.event.id,
                NewTicketType {
                    name: Name::parse(name).map_err(|_| invalid("name"))?,
                    price: Cents::parse_price(price).map_err(|_| invalid("price"))?,
                    capacity: Capacity::parse(capacity).map_err(|_| invalid("capacity"))?,
                    max_per_order: MaxPerOrder::default(),
                },
            )
            .await?;
        event.ticket_types.push(ticket_type);
    }
    Ok(Some(event))
}
