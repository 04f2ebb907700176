"""Tools for tests of tool turns, as a model would call them (see scripted_model.ToolCall)."""

from strands import tool


@tool
def lookup_order(order_id: str) -> str:
    """Look up the status of an order.

    Args:
        order_id: The order number.
    """
    return f"order {order_id} shipped"


@tool(name="lookup_order")
def failing_lookup_order(order_id: str) -> str:
    """Look up the status of an order, and fail.

    Args:
        order_id: The order number.
    """
    raise LookupError(f"no order {order_id}")
