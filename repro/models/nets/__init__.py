"""Networks that belong to one method (owned by that method's `code`)."""
