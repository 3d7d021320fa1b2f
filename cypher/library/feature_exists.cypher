// Whether a feature id is stored.
// params: $feature (feature id)
// returns: id (one row, or none)
MATCH (f:Feature {id: $feature})
RETURN f.id AS id
