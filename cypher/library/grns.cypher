// The imported gene regulatory networks and their provenance.
// params: none
// returns: name, source, format, n_edges, n_tfs, n_genes, dropped (JSON text), match_rate, dataset_coverage, dataset, complete
MATCH (g:GRN)
RETURN g.name AS name, g.source AS source, g.format AS format, g.n_edges AS n_edges, g.n_tfs AS n_tfs,
       g.n_genes AS n_genes, g.dropped AS dropped, g.match_rate AS match_rate,
       g.dataset_coverage AS dataset_coverage, g.dataset AS dataset, g.complete AS complete
ORDER BY name
