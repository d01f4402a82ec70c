"""Schemathesis hooks for Audrey's API fuzz run (crates/cli/tests/api_fuzz.rs).

Audrey documents NDJSON ingest (application/x-ndjson) as a string body; schemathesis has no
built-in serializer for that media type, so send the generated text as it is.
"""

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
