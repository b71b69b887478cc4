-- The W3C trace context (`traceparent`) of the request that recorded a workflow intent, so the
-- relay delivers it in Temporal's headers and one trace follows a ticket from the API call to
-- the email it caused. NULL when tracing is off.
ALTER TABLE outbox ADD COLUMN trace_context text;
