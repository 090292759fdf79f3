"""Planner: cost model and Pyomo models (fleet MILP, layer/bit partition). Imports only catalog."""
