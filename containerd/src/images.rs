//! [`ImageStore`] over containerd's images service: the records `ctr images ls` shows.

use async_trait::async_trait;
use strata_content::{Error, Image, ImageStore, Result};

use crate::convert::{field_mask, image_from_api, image_to_api};
use crate::proto::images;
use crate::store::ContainerdStore;

#[async_trait]
impl ImageStore for ContainerdStore {
    async fn get_image(&self, name: &str) -> Result<Image> {
        let resp = self
            .conn
            .images()
            .get(self.conn.request(images::GetImageRequest {
                name: name.to_string(),
            }))
            .await
            .map_err(|s| self.err(format!("image {name:?}"), s))?
            .into_inner();
        let img = resp
            .image
            .ok_or_else(|| Error::NotFound(format!("image {name:?}")))?;
        image_from_api(img)
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let resp = self
            .conn
            .images()
            .list(self.conn.request(images::ListImagesRequest {
                filters: Vec::new(),
            }))
            .await
            .map_err(|s| self.err("listing images", s))?
            .into_inner();
        let mut out = resp
            .images
            .into_iter()
            .map(image_from_api)
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn create_image(&self, image: Image) -> Result<Image> {
        let name = image.name.clone();
        let resp = self
            .conn
            .images()
            .create(self.conn.request(images::CreateImageRequest {
                image: Some(image_to_api(&image)),
                source_date_epoch: None,
            }))
            .await
            .map_err(|s| self.err(format!("creating image {name:?}"), s))?
            .into_inner();
        let img = resp
            .image
            .ok_or_else(|| Error::NotFound(format!("image {name:?}: none returned")))?;
        image_from_api(img)
    }

    async fn update_image(&self, image: Image, fieldpaths: &[String]) -> Result<Image> {
        let name = image.name.clone();
        let resp = self
            .conn
            .images()
            .update(self.conn.request(images::UpdateImageRequest {
                image: Some(image_to_api(&image)),
                update_mask: field_mask(fieldpaths),
                source_date_epoch: None,
            }))
            .await
            .map_err(|s| self.err(format!("updating image {name:?}"), s))?
            .into_inner();
        let img = resp
            .image
            .ok_or_else(|| Error::NotFound(format!("image {name:?}: none returned")))?;
        image_from_api(img)
    }

    async fn delete_image(&self, name: &str) -> Result<()> {
        self.conn
            .images()
            .delete(self.conn.request(images::DeleteImageRequest {
                name: name.to_string(),
                sync: false,
                target: None,
            }))
            .await
            .map_err(|s| self.err(format!("deleting image {name:?}"), s))?;
        Ok(())
    }
}
