"""One module per resource, each with its own `Api` route table."""
