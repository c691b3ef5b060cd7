"""The peer agent: one asyncio process per user and device of a Gibberish room."""
