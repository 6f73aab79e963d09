"""``caffe.net_spec``: netdsl's NetSpec builder."""
from netdsl.netspec import (Function, Layers, NetSpec, Parameters, Top,  # noqa: F401
                            assign as assign_proto, layers, params, to_proto)
