"""circuitdb.attribution"""
