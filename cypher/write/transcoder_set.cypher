// Upsert TranscoderSet nodes and link each to its Model.
// params: $rows: [{id, model, kind, d_features, hash}] (model is a Model id, written first)
// returns: n (rows written)
UNWIND $rows AS r
MERGE (t:TranscoderSet {id: r.id})
SET t.model = r.model, t.kind = r.kind, t.d_features = r.d_features, t.hash = r.hash
WITH t, r
MATCH (m:Model {id: r.model})
MERGE (t)-[:OF_MODEL]->(m)
RETURN count(*) AS n
