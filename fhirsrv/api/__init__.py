"""HTTP only: parse the request, call an interaction, render its Result. Nothing else knows Flask."""
