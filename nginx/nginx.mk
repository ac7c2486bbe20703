# placeholder, owned by its area
