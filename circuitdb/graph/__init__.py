"""circuitdb.graph"""
