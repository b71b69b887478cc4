-- Login throttling per email address, whether or not any account has it (issue 8, items 1-2).
--
-- Every login attempt first reserves a slot here in one statement; only an attempt that got a
-- slot has its password checked, so at most `login_max_failures` passwords are ever checked
-- per lock window, whatever the concurrency, and a right password that arrives once the limit
-- is reached is refused. Unknown emails are counted and locked the same way, so a 429 proves
-- nothing about an account. Not tenant data (login runs before a tenant is known): only the
-- owner role reads it, and it is not audited row by row (refused logins are audit events).

CREATE TABLE login_attempts (
    email        text PRIMARY KEY CHECK (email = lower(email)),
    failures     integer NOT NULL CHECK (failures > 0),
    locked_until timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_stale ON login_attempts (updated_at);

-- The per-account counters these replace.
ALTER TABLE users DROP COLUMN failed_logins, DROP COLUMN locked_until;
