"""Tools for tests of tool turns, as a model would call them (see scripted_model.ToolCall)."""

from strands import ToolContext, tool


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


@tool(context=True)
def delete_order(order_id: str, tool_context: ToolContext) -> str:
    """Delete an order, once a person approves (a Strands interrupt asks them).

    Args:
        order_id: The order number.
    """
    if tool_context.interrupt("approve-delete", reason=f"Delete order {order_id}?") != "yes":
        return "not deleted"
    return f"order {order_id} deleted"
