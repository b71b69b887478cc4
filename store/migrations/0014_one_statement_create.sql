-- Writes at database speed (issue 11): a create writes its ticket, its SLA pin and the intent
-- to start its workflow in one statement (`tickets::create`), so the tenant's number counter,
-- which every create of the kind queues behind until commit, is held for that statement and
-- the commit only. The intent names the workflow by the ticket's number, which only that
-- statement knows: this function writes it as Rust's `TicketNumber` does (`INC-000045`; six
-- digits at least, more when the number needs them). tests/tests/e2e/store.rs checks the two
-- agree.
CREATE FUNCTION archer_ticket_number(prefix text, n integer) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN prefix || '-' || CASE WHEN n < 1000000 THEN lpad(n::text, 6, '0') ELSE n::text END;
