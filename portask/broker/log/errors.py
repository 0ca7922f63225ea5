"""What the record view raises for stored bytes it cannot read, whichever the format."""


class UnreadableRecords(ValueError):
    """Stored bytes that do not read as records of the log's format."""
