"""Provisioners that execute a Plan: local worker processes and SkyPilot clusters."""
