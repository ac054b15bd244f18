//! `show NAME`.

use std::io::Write;

use jiff::Timestamp;

use super::{events, get_agent};
use crate::cli::{Output, ShowArgs};
use crate::error::Result;
use crate::view::{ShowView, show_text};
use crate::{Ctx, write_data};

/// Shows one LatticeAgent with its latest events.
pub async fn run(ctx: &Ctx, args: &ShowArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let agent = get_agent(ctx, &args.name).await?;
    let uid = agent.metadata.uid.clone().unwrap_or_default();
    let (latest, unavailable) = match events(ctx, &uid).await {
        Ok(all) => {
            let skip = all.len().saturating_sub(args.events);
            (all.into_iter().skip(skip).collect(), None)
        }
        Err(why) => (Vec::new(), Some(why)),
    };
    let view = ShowView::of(&agent, latest, unavailable);
    match ctx.output {
        Output::Table => write!(out, "{}", show_text(&view, Timestamp::now()))?,
        other => write_data(other, &view, out)?,
    }
    Ok(())
}
