"""The LangGraph Platform API door at /lg (routes.py), so langgraph_sdk and LangGraph Studio drive real
adgraph jobs; the thread/run model it maps onto is service/threads.py."""

from service.lg.routes import router

__all__ = ["router"]
