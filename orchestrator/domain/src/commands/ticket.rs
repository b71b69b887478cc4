//! Ticket commands: creating a ticket and changing one.
