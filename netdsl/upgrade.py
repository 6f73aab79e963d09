"""Legacy net upgrades (placeholder until the V0/V1 rules land)."""
from __future__ import annotations


def upgrade_net(net, filename=None):
    return net


def upgrade_solver(solver, filename=None):
    return solver
