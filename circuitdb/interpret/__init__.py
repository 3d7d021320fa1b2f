"""circuitdb.interpret"""
