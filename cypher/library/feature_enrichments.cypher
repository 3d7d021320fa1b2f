// A feature's automatic interpretation and its significant gene-set enrichments.
// params: $feature (feature id)
// returns: feature, label, top_genes, gene_set, library, term, p, q, odds, overlap, genes
MATCH (f:Feature {id: $feature})
OPTIONAL MATCH (f)-[e:ENRICHED_FOR]->(s:GeneSet)
RETURN f.id AS feature, f.label AS label, f.top_genes AS top_genes, s.id AS gene_set, e.library AS library,
       s.name AS term, e.p AS p, e.q AS q, e.odds AS odds, e.overlap AS overlap, e.genes AS genes
ORDER BY q, gene_set
