// Circuit membership of features, with influence, frequency and mean activation.
// params: $rows: [{circuit, mkey (merge key), feature, influence, frequency, activation}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (c:Circuit {id: r.circuit})
MATCH (f:Feature {id: r.feature})
MERGE (c)-[m:HAS_FEATURE {mkey: r.mkey}]->(f)
SET m.circuit = r.circuit, m.influence = r.influence, m.frequency = r.frequency, m.activation = r.activation
RETURN count(*) AS n
