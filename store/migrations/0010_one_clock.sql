-- One clock (issue 9, item 7): the API and the workers read time from one injected clock, so
-- tests can fix it. Each transaction Archer begins (`TenantTx`, `SystemTx`) reads that clock
-- once and sets it as `archer.now`, in the statement that sets its audit context;
-- `archer_now()` is that instant, and the database's own `now()` only where no Archer
-- transaction set one (psql, a statement outside a transaction). Column defaults and
-- functions stamp rows with `archer_now()`, so a row, its audit row and its outbox intent show
-- the clock's instant, as `now()` made them show the transaction's before.
--
-- Left as they were: `clock_timestamp()` defaults (`sla_events.recorded_at`,
-- `sla_escalations.created_at`), which record when a worker actually wrote a fact, to compare
-- with the workflow's instant (lateness), and sqlx's own `_sqlx_migrations`.

CREATE FUNCTION archer_now() RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(nullif(current_setting('archer.now', true), '')::timestamptz, now()) $$;

DO $$
DECLARE
    c record;
    f record;
    left_over text;
BEGIN
    -- every column stamped with `now()` by default
    FOR c IN
        SELECT table_name, column_name FROM information_schema.columns
         WHERE table_schema = current_schema() AND column_default = 'now()' AND table_name <> '_sqlx_migrations'
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET DEFAULT archer_now()', c.table_name, c.column_name);
    END LOOP;

    -- every function of ours (triggers included) that reads `now()`: redefined as it is, but
    -- reading `archer_now()` (`\m`: a word starting at `now`, so `archer_now()` is left alone)
    FOR f IN
        SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = current_schema() AND p.prokind IN ('f', 'p') AND p.proname <> 'archer_now'
           AND p.prosrc ~ '\mnow\(\)'
    LOOP
        EXECUTE regexp_replace(pg_get_functiondef(f.oid), '\mnow\(\)', 'archer_now()', 'g');
    END LOOP;

    -- what is left reading the database's clock: nothing, or this migration missed a kind
    SELECT string_agg(what, ', ') INTO left_over FROM (
        SELECT format('default of %I.%I', table_name, column_name) AS what FROM information_schema.columns
         WHERE table_schema = current_schema() AND column_default ~ '\mnow\(\)'
           AND table_name <> '_sqlx_migrations'
        UNION ALL
        SELECT format('function %s', p.oid::regprocedure) FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = current_schema() AND p.proname <> 'archer_now' AND p.prosrc ~ '\mnow\(\)'
        UNION ALL
        SELECT format('policy %I on %I', policyname, tablename) FROM pg_policies
         WHERE schemaname = current_schema()
           AND (coalesce(qual, '') ~ '\mnow\(\)' OR coalesce(with_check, '') ~ '\mnow\(\)')
        UNION ALL
        SELECT format('constraint %I on %s', conname, conrelid::regclass) FROM pg_constraint
         WHERE connamespace = current_schema()::regnamespace AND contype = 'c'
           AND pg_get_constraintdef(oid) ~ '\mnow\(\)'
        UNION ALL
        SELECT format('view %I', viewname) FROM pg_views
         WHERE schemaname = current_schema() AND definition ~ '\mnow\(\)'
    ) uses;
    IF left_over IS NOT NULL THEN
        RAISE EXCEPTION 'still reading now(): %', left_over;
    END IF;
END $$;
