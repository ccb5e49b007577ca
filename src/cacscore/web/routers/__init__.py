"""HTTP routes of the review app, one module per area (studies, review, export)."""
