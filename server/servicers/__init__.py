"""Thin gRPC servicers: decode at the edge (server.converters), call the data plane, encode the answer."""
