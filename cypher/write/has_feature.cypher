// Circuit membership of features, with influence, frequency and mean activation.
// params: $rows: [{circuit, feature, influence, frequency, activation}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (c:Circuit {id: r.circuit})
MATCH (f:Feature {id: r.feature})
MERGE (c)-[m:HAS_FEATURE {circuit: r.circuit}]->(f)
SET m.influence = r.influence, m.frequency = r.frequency, m.activation = r.activation
RETURN count(*) AS n
